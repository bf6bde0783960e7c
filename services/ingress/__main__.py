from libs.common.observability.logging import configure_service
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.ingress.app import create_app
from services.ingress.settings import IngressSettings

settings = load_or_exit(IngressSettings, alone="python -m services.ingress")
configure_service("ingress", settings)
serve(
    [(create_app(settings), settings.ingress_port)],
    host=settings.listen_host,
    shutdown_grace_s=settings.shutdown_grace_s,
    internal_port=settings.internal_port,
)
