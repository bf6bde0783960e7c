from libs.common.observability.logging import configure
from libs.common.runner import serve
from libs.common.settings import load_or_exit
from services.ingress.app import create_app
from services.ingress.settings import IngressSettings

settings = load_or_exit(IngressSettings)
configure("ingress", fmt=settings.log_format, level=settings.log_level)
serve([(create_app(settings), settings.ingress_port)], shutdown_grace_s=settings.shutdown_grace_s)
