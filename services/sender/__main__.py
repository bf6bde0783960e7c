from libs.common.observability.logging import configure_service
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.sender.app import create_app
from services.sender.settings import SenderSettings

settings = load_or_exit(SenderSettings, alone="python -m services.sender")
configure_service("sender", settings)
serve(
    [(create_app(settings), None)],
    host=settings.listen_host,
    shutdown_grace_s=settings.shutdown_grace_s,
    internal_port=settings.internal_port,
)
