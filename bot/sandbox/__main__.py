"""``python -m bot.sandbox``."""
import sys

from .server import main

sys.exit(main())
