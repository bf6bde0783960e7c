from libs.common.observability.logging import configure_service
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.router.app import create_app
from services.router.settings import RouterSettings

settings = load_or_exit(RouterSettings, alone="python -m services.router")
configure_service("router", settings)
serve(
    [(create_app(settings), None)],
    host=settings.listen_host,
    shutdown_grace_s=settings.shutdown_grace_s,
    internal_port=settings.internal_port,
)
