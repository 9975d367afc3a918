"""Ray job: fine-tune the sentiment classifier with Ray Train; registers finpulse-sentiment@challenger.

`ray job submit --working-dir . -- python jobs/train_sentiment.py --dataset phrasebank --data ../shared/data \
    --epochs 3 --num-workers 2`
"""

import argparse
import json

from finpulse.sentiment.datasets import DatasetSpec
from finpulse.sentiment.train import SentimentTrainConfig, train_sentiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="base model: minilm (shipped), a folder or a hub id")
    p.add_argument("--dataset", default="phrasebank",
                   choices=["phrasebank", "tfns", "csv", "vader_posts", "vader_synthetic"])
    p.add_argument("--data", help="data folder or file for the dataset")
    p.add_argument("--agreement", default="50", help="PhraseBank agreement: 50, 66, 75, all")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--config", default="{}", help="other SentimentTrainConfig fields as JSON")
    a = p.parse_args()
    spec = DatasetSpec(kind=a.dataset, path=a.data, agreement=a.agreement)
    cfg = SentimentTrainConfig(**{**json.loads(a.config), "model": a.model, "dataset": spec, "epochs": a.epochs,
                                  "num_workers": a.num_workers, "use_gpu": a.use_gpu})
    out = train_sentiment(cfg)
    print(json.dumps({k: v for k, v in out.items() if k != "history"}, default=str))


if __name__ == "__main__":
    main()
