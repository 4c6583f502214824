"""``python -m bot.sandbox``."""
import sys

from bot.sandbox.server import main

sys.exit(main())
