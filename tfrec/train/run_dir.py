"""A run folder: what it was made for (run.json), one trainer at a time, checked checkpoints.

    run.json          schema path + SHA-256, the full config, the tfrec version
    train.lock        held (flock) by the `tfrec train` using the folder; removed when it ends
    checkpoints/      a checkpoint per epoch (latest 2) and checkpoints/best/
    logs/             TensorBoard event files, HParams, the item-embedding projector
    metrics.json      final valid/test/test_cold metrics (written when training ends)
    blend/            the item-item blend chosen on valid ([blend]): item_item.npy, blend.json
    vocab/<set>.txt   the ids of each node set, one a line, line i = row i (what a warm start
                      maps onto a later run's ids)
    vocab/train_pairs.npz  the training pairs (user and item rows of vocab/): what a later
                      warm run's recency prior counts as added ([fresh])
    fresh/item_prior.npy   the recency prior chosen on valid ([fresh], warm runs): [I] float32
                      added to the item bias wherever the run scores (evaluate, export, gate)

`tfrec train` opens a run folder with `RunDir.training()`: it takes the lock (a second trainer
of the same folder is refused), checks that the folder holds this run or nothing, removes the
`*_temp` folders a kill during a checkpoint write leaves, and checks the checkpoints it would
resume from. run.json is written (`claim`) only once the data is read and validated, and a
folder that a failed first attempt created is removed again, so nothing half-made blocks a
corrected re-run.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

import tfrec
from tfrec.config import Config, config_from_dict
from tfrec.errors import TfrecError

LOCK_NAME = "train.lock"
# Config sections fitted after the model: changing them on a finished run refits them at the
# end of the next `tfrec train`, the model's training and checkpoints are kept.
REFIT_SECTIONS = ("blend", "fresh")


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    checkpoints = property(lambda self: self.path / "checkpoints")
    best_checkpoints = property(lambda self: self.path / "checkpoints" / "best")
    logs = property(lambda self: self.path / "logs")
    metrics_file = property(lambda self: self.path / "metrics.json")
    manifest_file = property(lambda self: self.path / "run.json")
    lock_file = property(lambda self: self.path / LOCK_NAME)
    vocab = property(lambda self: self.path / "vocab")
    blend_dir = property(lambda self: self.path / "blend")
    prior_file = property(lambda self: self.path / "fresh" / "item_prior.npy")

    # === What the folder holds ===

    def manifest(self) -> dict:
        if not self.manifest_file.is_file():
            raise TfrecError(f"{self.path} is not a tfrec run folder (no run.json): train "
                             "into it first with tfrec train --run-dir")
        return self._read_json(self.manifest_file)

    def schema_and_config(self) -> tuple[str, Config]:
        m = self.manifest()
        try:
            config, train = m["config"], m["config"].get("train", {})
            if train.get("logq") is True and train.get("negatives", "all") == "all":
                # a run.json from before logq became "auto": true did nothing with every item a
                # candidate, and is refused in new configs
                config = {**config, "train": {**train, "logq": "auto"}}
            return m["schema"], config_from_dict(config)
        except (KeyError, TypeError, AttributeError):
            raise TfrecError(f"{self.manifest_file} is damaged (no schema or config): choose a "
                             "new --run-dir") from None
        except TfrecError as e:
            raise TfrecError(f"{self.manifest_file}: {e}") from None

    def check(self, schema: str, config: Config) -> bool:
        """True if the folder holds an earlier run of `schema` + `config` (resume it), False if
        it is new or empty; refuses a run of another schema or config, or other files."""
        if self.manifest_file.is_file():
            have = self._read_json(self.manifest_file)
            wanted = self._wanted(schema, config)
            if have.get("schema_sha256") != wanted["schema_sha256"]:
                raise TfrecError(f"run folder {self.path} holds a run of another schema "
                                 f"({have.get('schema')}); choose a new --run-dir")
            have = {**have, "config": _with_defaults(have.get("config"))}
            if _fixed(have.get("config")) != _fixed(wanted["config"]):
                diff = sorted(f"{s}.{k}" for s, v in _fixed(wanted["config"]).items() for k in v
                              if have.get("config", {}).get(s, {}).get(k) != v[k])
                raise TfrecError(f"run folder {self.path} holds a run with another config "
                                 f"(differs in {', '.join(diff) or 'sections'}); choose a new "
                                 "--run-dir")
            return True
        if self.path.is_dir() and any(p.name != LOCK_NAME for p in self.path.iterdir()):
            raise TfrecError(f"run folder {self.path} is not empty and is not a tfrec run; "
                             "choose a new --run-dir")
        if self.path.exists() and not self.path.is_dir():
            raise TfrecError(f"run folder {self.path} is a file, not a folder; choose a new "
                             "--run-dir")
        return False

    def claim(self, schema: str, config: Config) -> bool:
        """Records what this run is for (run.json); True if it resumes an earlier run of the
        same thing. Refuses a folder that holds a run of another schema or config, or other
        files."""
        if self.check(schema, config):
            self._write_json(self.manifest_file, self._wanted(schema, config))  # [blend] may differ
            return True
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_json(self.manifest_file, self._wanted(schema, config))
        return False

    @staticmethod
    def _wanted(schema: str, config: Config) -> dict:
        return {"schema": str(Path(schema).resolve()), "schema_sha256": _sha(schema),
                "config": config.to_dict(), "tfrec": tfrec.__version__}

    # === One trainer at a time ===

    @contextlib.contextmanager
    def training(self, schema: str, config: Config):
        """The folder, locked for one `tfrec train`: refuses a folder another trainer holds or
        that holds another run; cleans up partial checkpoint writes; checks the checkpoints.
        If the block fails before `claim` wrote run.json in a folder this call created, the
        folder is removed again."""
        created = not self.path.exists()
        with self.lock():
            try:
                self.check(schema, config)
                self.remove_partial_checkpoints()
                self.latest_checkpoint()
                if self.best_checkpoints.is_dir():
                    self.best_checkpoint()
                yield self
            except BaseException:
                if created and not self.manifest_file.exists():
                    with contextlib.suppress(OSError):
                        self.lock_file.unlink()
                        self.path.rmdir()  # only if empty: nothing else was written
                raise

    @contextlib.contextmanager
    def lock(self):
        """Holds an exclusive flock on run_dir/train.lock (which holds the owner's pid). The
        kernel releases it when the process ends, however it ends, so a crash leaves no stale
        lock. TfrecError if another process holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise TfrecError(f"run folder {self.path} is a file, not a folder; choose a new "
                             "--run-dir") from None
        except OSError as e:
            raise TfrecError(f"cannot create run folder {self.path} ({e.strerror})") from None
        fd = self._acquire()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()  # while still holding it: the next opener makes a new one
            os.close(fd)

    def _acquire(self) -> int:
        for _ in range(100):
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                owner = self._lock_owner()
                raise TfrecError(f"run folder {self.path} is in use by another tfrec train"
                                 f"{f' (pid {owner})' if owner else ''}; wait for it to end or "
                                 "choose another --run-dir") from None
            try:
                same = os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)  # its holder removed the file as we opened it: open the new one
        raise TfrecError(f"could not lock run folder {self.path}; try again")

    def _lock_owner(self) -> str:
        try:
            return self.lock_file.read_text().strip()
        except OSError:
            return ""

    # === Checkpoints ===

    def remove_partial_checkpoints(self) -> list[Path]:
        """Removes the `<prefix>_temp/` folders TensorFlow writes a checkpoint into before it
        renames it into place (left behind when a save is killed); returns them."""
        removed = []
        for folder in (self.checkpoints, self.best_checkpoints):
            if folder.is_dir():
                for temp in folder.glob("*_temp"):
                    if temp.is_dir():
                        shutil.rmtree(temp)
                        removed.append(temp)
        return removed

    def latest_checkpoint(self) -> str | None:
        """The prefix of the newest checkpoint in checkpoints/ (None if there is none), after
        checking that its files are whole; TfrecError naming a damaged file."""
        return _checked_checkpoint(self.checkpoints, self.checkpoints)

    def best_checkpoint(self) -> str:
        """The prefix of the best epoch's checkpoint, checked; TfrecError if there is none or
        it is damaged."""
        path = _checked_checkpoint(self.best_checkpoints, self.checkpoints)
        if path is None:
            raise TfrecError(f"run folder {self.path} has no best checkpoint yet: train first")
        return path

    def kept_checkpoint_note(self) -> str:
        """Where training can resume from, for the message of a stopped run."""
        import tensorflow as tf

        path = tf.train.latest_checkpoint(str(self.checkpoints))
        if path is None:
            return "no epoch finished, so no checkpoint was written"
        epoch = path.rsplit("-", 1)[-1]
        return f"the last good checkpoint (epoch {epoch}) is kept in {self.checkpoints}"

    # === Metrics ===

    def read_metrics(self) -> dict | None:
        """metrics.json of a finished run, or None."""
        if not self.metrics_file.is_file():
            return None
        return self._read_json(self.metrics_file)

    def write_metrics(self, metrics: dict) -> None:
        self._write_json(self.metrics_file, metrics)

    # === The blend ===

    def write_blend(self, blend) -> None:
        """Writes blend/ (a tfrec.evaluate.blend.Blend) atomically, or removes it for None."""
        if blend is None:
            shutil.rmtree(self.blend_dir, ignore_errors=True)
            return
        from tfrec.atomic import atomic_dir

        with atomic_dir(self.blend_dir) as tmp:
            blend.save(tmp)

    def read_blend(self, history):
        """The run's Blend over the users' `history` CSR, or None if it has none."""
        from tfrec.evaluate.blend import Blend

        return Blend.load(self.blend_dir, history) if self.blend_dir.is_dir() else None

    # === Vocabularies ===

    def write_vocab(self, node_ids: dict, features: dict | None = None,
                    train_pairs: dict | None = None) -> None:
        """Writes vocab/<node set>.txt (node set -> [N] ids; line i = row i),
        vocab/features/<node set>.<cats|multi>.<feature>.json (`features`: the rows of the
        feature tables, tfrec.model.inputs.feature_vocabularies) and vocab/train_pairs.npz
        (`train_pairs`: {user node set: [P] rows, item node set: [P] rows}), atomically."""
        from tfrec.atomic import atomic_dir

        with atomic_dir(self.vocab) as tmp:
            if train_pairs:
                import numpy as np

                (user_set, users), (item_set, items) = train_pairs.items()
                np.savez_compressed(tmp / "train_pairs.npz", sets=np.array([user_set, item_set]),
                                    users=np.asarray(users, np.int32),
                                    items=np.asarray(items, np.int32))
            for name, ids in node_ids.items():
                (tmp / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids),
                                                 encoding="utf-8")
            if features:
                (tmp / "features").mkdir()
            for key, values in (features or {}).items():
                (tmp / "features" / f"{key.replace('/', '.')}.json").write_text(
                    json.dumps(values), encoding="utf-8")

    def read_vocab(self) -> dict | None:
        """node set -> [N] object array of ids, or None for a run from before vocab/."""
        import numpy as np

        if not self.vocab.is_dir():
            return None
        return {p.stem: np.array(p.read_text(encoding="utf-8").splitlines(), dtype=object)
                for p in sorted(self.vocab.glob("*.txt"))}

    def read_train_pairs(self):
        """(user ids [P], item ids [P]) of the run's training pairs, or None for a run from
        before vocab/train_pairs.npz."""
        import numpy as np

        path = self.vocab / "train_pairs.npz"
        vocab = self.read_vocab()
        if not path.is_file() or vocab is None:
            return None
        try:
            with np.load(path) as f:
                (user_set, item_set), users, items = f["sets"], f["users"], f["items"]
            return vocab[str(user_set)][users].astype(str), vocab[str(item_set)][items].astype(str)
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise TfrecError(f"{path} is damaged ({e}): train the old run again") from None

    # === The recency prior ===

    def write_item_prior(self, prior) -> None:
        """Writes fresh/item_prior.npy ([I] float32), or removes fresh/ for None."""
        import numpy as np

        if prior is None:
            shutil.rmtree(self.prior_file.parent, ignore_errors=True)
            return
        from tfrec.atomic import atomic_dir

        with atomic_dir(self.prior_file.parent) as tmp:
            np.save(tmp / self.prior_file.name, np.asarray(prior, np.float32))

    def read_item_prior(self):
        """The run's recency prior [I] float32, or None if it has none."""
        import numpy as np

        if not self.prior_file.is_file():
            return None
        try:
            return np.load(self.prior_file).astype(np.float32)
        except (OSError, ValueError) as e:
            raise TfrecError(f"{self.prior_file} is damaged ({e}): train the run again to "
                             "refit it") from None

    def read_feature_vocab(self) -> dict[str, list[str]]:
        """The feature vocabularies `write_vocab` wrote ({} for a run from before them)."""
        return {p.stem.replace(".", "/", 2): json.loads(p.read_text(encoding="utf-8"))
                for p in sorted((self.vocab / "features").glob("*.json"))}

    # === Files ===

    def _read_json(self, path: Path) -> dict:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise TfrecError(f"{path} is damaged ({e}): delete it or choose a new "
                             "--run-dir") from None
        if not isinstance(value, dict):
            raise TfrecError(f"{path} is damaged (not a JSON object): delete it or choose a new "
                             "--run-dir")
        return value

    @staticmethod
    def _write_json(path: Path, value: dict) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=2) + "\n")
        tmp.replace(path)


def _with_defaults(config):
    """A run.json's config with the sections and keys it predates (such as train.mode and
    [sample]) at their defaults, so an earlier run still resumes."""
    if not isinstance(config, dict):
        return config
    defaults = Config().to_dict()
    return {**defaults, **{s: {**defaults.get(s, {}), **v} if isinstance(v, dict) else v
                           for s, v in config.items()}}


def _fixed(config):
    """A config without the REFIT_SECTIONS: what must not change to resume a run."""
    if not isinstance(config, dict):
        return config
    return {s: v for s, v in config.items() if s not in REFIT_SECTIONS}


def _checked_checkpoint(folder: Path, remove: Path) -> str | None:
    """The newest checkpoint prefix in `folder` with every tensor readable, or None if the
    folder has none; TfrecError naming the damaged file and saying to remove `remove`."""
    import tensorflow as tf

    advice = f"delete {remove} to train again from scratch, or choose a new --run-dir"
    state = folder / "checkpoint"
    if not state.exists():
        return None
    try:
        path = tf.train.latest_checkpoint(str(folder))
    except Exception as e:  # noqa: BLE001  (TF raises parse, decode and OS errors alike)
        raise TfrecError(f"checkpoint state file {state} is damaged ({_reason(e)}): "
                         f"{advice}") from None
    if path is None:
        listed = _listed(state)
        problem = (f"names {listed}, whose files are missing" if listed else
                   "is damaged (it names no checkpoint)")
        raise TfrecError(f"checkpoint state file {state} {problem}: {advice}")
    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as e:  # noqa: BLE001
        raise TfrecError(f"checkpoint file {path}.index is damaged ({_reason(e)}): "
                         f"{advice}") from None
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001
        data = sorted(Path(folder).glob(Path(path).name + ".data-*"))
        if not data:
            raise TfrecError(f"checkpoint file {path}.data-* is missing: {advice}") from None
        raise TfrecError(f"checkpoint file {', '.join(map(str, data))} is damaged or cut short "
                         f"({_reason(e)}): {advice}") from None
    return path


def _listed(state: Path) -> str:
    try:
        return state.read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def _reason(e: Exception) -> str:
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0][:120]
