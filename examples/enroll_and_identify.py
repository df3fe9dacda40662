"""Enrol a person from one recording and identify another, with gaitcam as a library.

    python examples/enroll_and_identify.py GALLERY.db ENROL_RECORDING NAME QUERY_RECORDING

Prints each decision on the query and then the events the session emitted (JSON lines).
"""
import json
import sys

import gaitcam


def main(gallery: str, enrol_from: str, name: str, query: str) -> None:
    with gaitcam.open_session(gallery=gallery, device="auto") as session:
        result = session.enroll(name, enrol_from)
        print(f"enrolled {result.name}: {result.windows} windows, {result.seconds:.1f} s of walking")
        for decision in session.identify(query):
            print(f"track {decision['track']}: {decision['identity'] or 'unknown'} (score {decision['score']})")
        for event in session.events():
            print(json.dumps(event))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
