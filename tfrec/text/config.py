"""`TextConfig`: how the recommender uses item and user text (frozen, fine-tuned or off)."""

import dataclasses

from tfrec.errors import TfrecError

MODES = ("frozen", "finetune", "off")
# The MiniLM checkpoint has 512 learned positions; [CLS] and [SEP] take two of them.
MIN_SEQUENCE_LENGTH = 3
MAX_SEQUENCE_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Text-encoder settings, validated on construction.

    Attributes:
      mode: "frozen" (embeddings computed once, cached, stored as node features), "finetune"
        (the BERT backbone trains inside the recommender; for GPUs and small catalogues) or
        "off" (no text features).
      sequence_length: tokens per text after packing, [CLS] and [SEP] included; longer texts
        are truncated. 32 fits product and movie titles.
      batch_size: texts per forward pass when precomputing embeddings.
      finetune_items: "finetune": the number of a training batch's distinct positive items whose
        text is re-encoded with gradients each step (the others are read from a table that is
        re-encoded every epoch); the cost of a step grows with it.
      learning_rate: "finetune": Adam learning rate of the BERT backbone (the rest of the model
        uses train.learning_rate; pretrained transformers want a far smaller one).
    """

    mode: str = "frozen"
    sequence_length: int = 32
    batch_size: int = 128
    finetune_items: int = 128
    learning_rate: float = 3e-5

    def __post_init__(self):
        if self.mode not in MODES:
            raise TfrecError(
                f"text.mode is {self.mode!r}, but it must be one of {', '.join(MODES)}."
            )
        _check_int("text.sequence_length", self.sequence_length,
                   MIN_SEQUENCE_LENGTH, MAX_SEQUENCE_LENGTH)
        _check_int("text.batch_size", self.batch_size, 1, 65536)
        _check_int("text.finetune_items", self.finetune_items, 1, 65536)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 1e-9 <= lr <= 1.0:
            raise TfrecError(f"text.learning_rate is {lr!r}, but it must be a number from 1e-9 "
                             "to 1.")

    @classmethod
    def from_dict(cls, values: dict) -> "TextConfig":
        """Builds a config from a mapping (e.g. the `text:` section of a config file)."""
        if not isinstance(values, dict):
            raise TfrecError(f"the text config must be a mapping, got {type(values).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TfrecError(
                f"unknown text config field(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}."
            )
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_int(field: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TfrecError(f"{field} is {value!r}, but it must be an integer from {low} to {high}.")
