"""`TextConfig`: how the recommender uses item and user text (frozen, fine-tuned or off)."""

import dataclasses

from tfrec.config_fields import Validated, bounded, choice

MODES = ("frozen", "finetune", "off")
# The MiniLM checkpoint has 512 learned positions; [CLS] and [SEP] take two of them.
MIN_SEQUENCE_LENGTH = 3
MAX_SEQUENCE_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class TextConfig(Validated):
    """Text-encoder settings (the config's [text] section), validated on construction.

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

    mode: str = choice(*MODES)
    sequence_length: int = bounded(32, MIN_SEQUENCE_LENGTH, MAX_SEQUENCE_LENGTH)
    batch_size: int = bounded(128, 1, 65536)
    finetune_items: int = bounded(128, 1, 65536)
    learning_rate: float = bounded(3e-5, 1e-9, 1.0)

    SECTION = "text"

    @classmethod
    def from_dict(cls, values: dict) -> "TextConfig":
        """Builds a config from a mapping (e.g. the [text] section of a config file)."""
        return cls.from_mapping(values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
