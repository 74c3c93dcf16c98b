"""`SentenceEncoder`: raw strings -> MiniLM sentence embeddings, as one Keras layer.

It tokenises in-graph (tensorflow-text WordPiece ops inside keras-nlp's preprocessor), so it
works in `tf.function`s, Keras models and SavedModels that take string inputs.
"""

from tfrec.text._imports import import_tf
from tfrec.text.config import TextConfig
from tfrec.text.pooling import SentencePooling

tf = import_tf()


@tf.keras.utils.register_keras_serializable(package="tfrec")
class SentenceEncoder(tf.keras.layers.Layer):
    """Strings -> L2-normalised sentence embeddings (all-MiniLM-L6-v2, mean pooling).

    Args:
      sequence_length: tokens per text ([CLS] and [SEP] included); longer texts are truncated.
      trainable_backbone: True in "finetune" mode: the BERT weights train with the model and
        its dropout is active when `training=True`. False ("frozen"): the backbone is a fixed
        feature extractor, always run in inference mode.
      preprocessor, backbone: optional keras-nlp objects to use instead of loading the cached
        preset (see `load_backbone_and_preprocessor`).

    Call args:
      texts: [batch] (or [batch, 1]) string tensor. "" gives the embedding of "[CLS] [SEP]".

    Returns:
      [batch, 384] float32 tensor with unit-norm rows.
    """

    def __init__(self, sequence_length: int = 32, trainable_backbone: bool = False,
                 preprocessor=None, backbone=None, **kwargs):
        super().__init__(**kwargs)
        TextConfig(sequence_length=sequence_length)  # validates the value
        if preprocessor is None or backbone is None:
            from tfrec.text.preset import load_backbone_and_preprocessor

            preprocessor, backbone = load_backbone_and_preprocessor(sequence_length)
        preprocessor.sequence_length = sequence_length
        self.sequence_length = sequence_length
        self.trainable_backbone = bool(trainable_backbone)
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.backbone.trainable = self.trainable_backbone
        self.pooling = SentencePooling(name="sentence_pooling")

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.hidden_dim)

    def tokenize(self, texts):
        """texts [B] (or [B, 1]) string -> (token_ids [B, L] int32, padding_mask [B, L] bool),
        in-graph (WordPiece ops): [CLS] text [SEP], truncated, padded to L = sequence_length."""
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise TypeError(f"SentenceEncoder expects string texts, got {texts.dtype.name}.")
        if texts.shape.rank == 2:
            texts = tf.squeeze(texts, axis=-1)
        inputs = self.preprocessor(texts)
        return (tf.cast(inputs["token_ids"], tf.int32),
                tf.cast(inputs["padding_mask"], tf.bool))

    def encode_tokens(self, token_ids, padding_mask, training=None):
        """token_ids, padding_mask [B, L] -> [B, 384] float32 unit rows. No text ops, so it
        compiles with XLA (fine-tuning tokenises once, then trains on the ids)."""
        outputs = self.backbone({"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                                 "padding_mask": padding_mask},
                                training=training if self.trainable_backbone else False)
        return self.pooling(outputs["sequence_output"], padding_mask)

    def call(self, texts, training=None):
        return self.encode_tokens(*self.tokenize(texts), training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.embedding_dim])

    def get_config(self):
        # The weights come from the cached preset (or a saved checkpoint of the model).
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "trainable_backbone": self.trainable_backbone}


def make_sentence_encoder(config: TextConfig) -> SentenceEncoder | None:
    """The in-model text encoder for `config.mode`: None for "off"; a frozen encoder for
    "frozen" (to embed new texts, e.g. a new product's title, the way the stored node features
    were embedded); a trainable one for "finetune"."""
    if config.mode == "off":
        return None
    return SentenceEncoder(sequence_length=config.sequence_length,
                           trainable_backbone=config.mode == "finetune")
