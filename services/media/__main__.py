from libs.common.observability.logging import configure_service
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.media.app import create_app
from services.media.settings import MediaSettings

settings = load_or_exit(MediaSettings, alone="python -m services.media")
configure_service("media", settings)
serve(
    [(create_app(settings), settings.media_port)],
    host=settings.listen_host,
    shutdown_grace_s=settings.shutdown_grace_s,
    internal_port=settings.internal_port,
)
