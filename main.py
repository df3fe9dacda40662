"""gaitcam entry point: `python main.py --help`."""
import sys

from gaitcam.cli import main

if __name__ == "__main__":
    sys.exit(main())
