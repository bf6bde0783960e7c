from libs.common.observability.logging import configure
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.media.app import create_app
from services.media.settings import MediaSettings

settings = load_or_exit(MediaSettings)
configure("media", fmt=settings.log_format, level=settings.log_level)
serve([(create_app(settings), settings.media_port)], shutdown_grace_s=settings.shutdown_grace_s)
