"""``broker serve`` with background jobs on a short schedule, for the functional job tests.

Runs ``broker.startup.run_server``, the server start-up ``broker serve`` is meant to
call, with job timings the settings cannot yet express (there is no
``BROKER_JOB_*`` setting yet). Errors end the process as the CLI does: one
line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from broker.config import load_settings
from broker.errors import AccordError
from broker.startup import JobOptions, run_server


def main() -> None:
    """Parse the timings and serve until stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--checkpoint-every", type=float, default=0.5)
    parser.add_argument("--retention-every", type=float, default=0.7)
    parser.add_argument("--max-wait", type=float, default=30.0)
    args = parser.parse_args()
    jobs = JobOptions(
        poll_seconds=args.poll,
        checkpoint_every_seconds=args.checkpoint_every,
        retention_every_seconds=args.retention_every,
    )
    try:
        run_server(load_settings(), port=args.port, jobs=jobs, max_wait_seconds=args.max_wait)
    except AccordError as exc:
        sys.stderr.write(f"broker: error: {exc.one_line()}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
