"""Example input files for the README's commands: `python -m producers.samples`.

Writes, in the current directory (or ``--dir``):

- ``test_base.csv``: a model's test base for `monitor reference load` (``score``, ``TARGET`` and the
  features of the synthetic population, the demo scenario's reference draw);
- ``october.csv.gz``: one month (2024-10) of scored records for `monitor produce --file`
  (``record_id``, ``REF_DATE``, ``score``, ``TARGET``, features);
- ``challenge.csv``: the last month of the bundled ``lendingclub`` dataset without scores (features,
  ``REF_DATE``, ``TARGET``), for `monitor produce --file ... --model lendingclub_default`, which scores it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SAMPLE_FILES = ("test_base.csv", "october.csv.gz", "challenge.csv")


def reference_sample(n: int = 10_000) -> pd.DataFrame:
    """The demo scenario's reference sample: what a model scored on its test set.

    >>> df = reference_sample(200)
    >>> list(df.columns[:2]), len(df)
    (['score', 'TARGET'], 200)
    """
    from producers.synthetic import SCENARIOS, reference_frame

    return reference_frame(SCENARIOS["demo"], n=n)


def month_of_records(month: str = "2024-10", n: int = 5_000, model: str = "default") -> pd.DataFrame:
    """One month of scored records, one column per feature (as a scoring system would export them).

    >>> df = month_of_records(n=10)
    >>> list(df.columns[:4]), df["REF_DATE"].str[:7].unique().tolist()
    (['record_id', 'REF_DATE', 'score', 'TARGET'], ['2024-10'])
    """
    from producers.synthetic import Scenario, generate

    scenario = Scenario(name="sample", model=model, start_month=month, months=1, monthly_volume=n)
    return pd.DataFrame([{"record_id": r["record_id"], "REF_DATE": r["ref_date"], "score": r["score"],
                          "TARGET": r["target"], **r["features"]} for r in generate(scenario)])


def challenge(dataset: str = "lendingclub") -> pd.DataFrame:
    """A bundled dataset's last month, features only: a registered model scores it when published."""
    from datasets import load

    frame, _card = load(dataset)
    last = frame["REF_DATE"].astype(str).str[:7].max()
    return frame[frame["REF_DATE"].astype(str).str[:7] == last].reset_index(drop=True)


def write_samples(directory: Path) -> list[Path]:
    """Write the three example files into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / name for name in SAMPLE_FILES]
    reference_sample().to_csv(paths[0], index=False)
    month_of_records().to_csv(paths[1], index=False)
    challenge().to_csv(paths[2], index=False)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m producers.samples [--dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m producers.samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("."), help="Where to write (default: here).")
    for path in write_samples(parser.parse_args(argv).dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
