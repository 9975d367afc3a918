"""Ray job: the promotion gate, finpulse-forecaster@challenger -> @champion on walk-forward MAE.

`python jobs/promote.py --margin 0.01`
"""

import argparse
import json
from dataclasses import asdict

from finpulse.forecast.promote import PromotionPolicy, promote


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", default="finpulse-forecaster")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--persistence-tolerance", type=float, default=0.0)
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args()
    d = promote(a.name, PromotionPolicy(margin=a.margin, persistence_tolerance=a.persistence_tolerance),
                dry_run=a.dry_run)
    print(json.dumps(asdict(d), indent=2))


if __name__ == "__main__":
    main()
