"""A run folder: what it was made for (run.json), and refusing to mix runs.

    run.json          schema path + SHA-256, the full config, the tfrec version
    checkpoints/      a checkpoint per epoch (latest 2) and checkpoints/best/
    logs/             TensorBoard event files, HParams, the item-embedding projector
    metrics.json      final valid/test/test_cold metrics (written when training ends)
"""

import hashlib
import json
from pathlib import Path

import tfrec
from tfrec.config import Config, config_from_dict
from tfrec.errors import TfrecError


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    checkpoints = property(lambda self: self.path / "checkpoints")
    logs = property(lambda self: self.path / "logs")
    metrics_file = property(lambda self: self.path / "metrics.json")
    manifest_file = property(lambda self: self.path / "run.json")

    def manifest(self) -> dict:
        if not self.manifest_file.is_file():
            raise TfrecError(f"{self.path} is not a tfrec run folder (no run.json): train "
                             "into it first with tfrec train --run-dir")
        return json.loads(self.manifest_file.read_text())

    def schema_and_config(self) -> tuple[str, Config]:
        m = self.manifest()
        config, train = m["config"], m["config"].get("train", {})
        if train.get("logq") is True and train.get("negatives", "all") == "all":
            # a run.json from before logq became "auto": true did nothing with every item a
            # candidate, and is refused in new configs
            config = {**config, "train": {**train, "logq": "auto"}}
        return m["schema"], config_from_dict(config)

    def claim(self, schema: str, config: Config) -> bool:
        """Records what this run is for; True if it resumes an earlier run of the same thing.

        Refuses a folder that holds a run of another schema or config, or other files."""
        wanted = {"schema": str(Path(schema).resolve()), "schema_sha256": _sha(schema),
                  "config": config.to_dict(), "tfrec": tfrec.__version__}
        if self.manifest_file.is_file():
            have = json.loads(self.manifest_file.read_text())
            if have.get("schema_sha256") != wanted["schema_sha256"]:
                raise TfrecError(f"run folder {self.path} holds a run of another schema "
                                 f"({have.get('schema')}); choose a new --run-dir")
            if have.get("config") != wanted["config"]:
                diff = sorted(f"{s}.{k}" for s, v in wanted["config"].items() for k in v
                              if have.get("config", {}).get(s, {}).get(k) != v[k])
                raise TfrecError(f"run folder {self.path} holds a run with another config "
                                 f"(differs in {', '.join(diff) or 'sections'}); choose a new "
                                 "--run-dir")
            return True
        if self.path.exists() and any(self.path.iterdir()):
            raise TfrecError(f"run folder {self.path} is not empty and is not a tfrec run; "
                             "choose a new --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(wanted, indent=2) + "\n")
        tmp.replace(self.manifest_file)
        return False

    def read_metrics(self) -> dict | None:
        """metrics.json of a finished run, or None."""
        if not self.metrics_file.is_file():
            return None
        return json.loads(self.metrics_file.read_text())

    def write_metrics(self, metrics: dict) -> None:
        tmp = self.metrics_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        tmp.replace(self.metrics_file)
