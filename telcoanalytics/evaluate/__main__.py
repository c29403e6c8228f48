"""``python -m telcoanalytics.evaluate nab|synth``: the anomaly-detection evaluation."""

from telcoanalytics.evaluate.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
