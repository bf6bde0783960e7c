from examples.extension.app import create_app
from examples.extension.settings import HistorySettings
from libs.common.observability.logging import configure
from libs.common.runner import serve
from libs.common.settings import load_or_exit

settings = load_or_exit(HistorySettings)
configure("history", fmt=settings.log_format, level=settings.log_level)
serve([(create_app(settings), settings.history_port)], shutdown_grace_s=settings.shutdown_grace_s)
