r"""The reference LSTM language model on WikiText-2 (reference Problem 1, six experiments).

Run:
  python train.py --config=configs/lstm_lm.py:layers=1,optimizer=adam --workdir=runs/lstm1

Variant arguments: ``layers`` (1, 2, 4 in the study), ``optimizer`` (adam | adamw | sgd |
momentum), ``dataset`` (wikitext2 | tiny_shakespeare | text_files | tokens_npz), ``tiny`` (a
seconds-long CPU run on a small synthetic text file, for tests: give the file with
``--config.dataset.train_path`` etc.).

WikiText-2 needs its archive once (see input_pipeline/wikitext2.py); tiny_shakespeare is offline in
../shared/tensorflow_datasets.
"""

import ml_collections

from configs import common

ARGS = {'layers': 1, 'optimizer': 'adam', 'dataset': 'wikitext2', 'tiny': False}


def lm_dataset(name: str) -> ml_collections.ConfigDict:
  """Text dataset fields (see input_pipeline/text_data.py)."""
  d = ml_collections.ConfigDict()
  d.name = name  # wikitext2 | tiny_shakespeare | text_files | tokens_npz.
  d.data_dir = ''  # TFDS data dir; '' = $TFDS_DATA_DIR, else ../shared/tensorflow_datasets.
  d.manual_dir = ''  # Where a manually downloaded WikiText-2 archive lies ('' = DATA_DIR/downloads/manual).
  d.variant = 'word'  # wikitext2: word (tokenised, <unk>) | raw.
  d.train_split = 'train'  # TFDS splits (wikitext2, tiny_shakespeare).
  d.val_split = 'validation'
  d.test_split = 'test'
  d.train_path = ''  # text_files / tokens_npz: one file per split.
  d.val_path = ''
  d.test_path = ''
  d.vocab_size = 0  # tokens_npz: vocabulary size of the pre-tokenised ids.
  d.tokenizer = 'word'  # byte | char | word (vocabulary from the training split only).
  d.min_count = 1  # word/char: keep tokens seen at least this often in training, else <unk>.
  d.sequence_length = 256  # Tokens per input sequence (targets are shifted by one).
  d.break_mode = 'none'  # none (one stream) | lines | complete (whole lines packed).
  if name == 'tiny_shakespeare':
    d.tokenizer = 'char'
  return d


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A seconds-long CPU run on a text file (paths given by the caller)."""
  c.dataset.name = 'text_files'
  c.dataset.tokenizer = 'char'
  c.dataset.sequence_length = 32
  c.loop.batch_size = 8
  c.loop.num_epochs = 2
  c.loop.log_every_steps = 0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.task.name = 'language_modeling'
  c.dataset = lm_dataset(args['dataset'])
  m = c.model
  m.name = 'lstm_lm'  # Registered model name.
  m.num_layers = args['layers']  # Stacked LSTM layers.
  m.hidden_size = 512  # LSTM state width.
  m.embed_size = 768  # Embedding width (also the head's projection width, tied weights).
  m.dropout = 0.0  # Dropout on embeddings and between LSTM layers.
  m.embedding_path = ''  # .npy/.npz [vocab, embed] to initialise the embedding from.
  m.freeze_embeddings = False  # Keep a loaded embedding fixed (no gradient, no weight decay).
  m.scan_unroll = 0  # Time steps per recurrence loop iteration (speed only); 0: 16 on GPU/TPU, 1 on CPU.
  # Parameter initialisation (models/inits.py): 'reference' is PyTorch's nn.Embedding N(0, 1),
  # nn.LSTM and nn.Linear U(+-1/sqrt(fan_in)); 'flax' is N(0, 1/sqrt(E)) embeddings, LeCun-normal
  # and orthogonal LSTM kernels, zero biases.
  m.init = 'reference'
  c.optimizer.name = args['optimizer']
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.momentum = 0.9
  c.loop.batch_size = 16
  c.loop.num_epochs = 10
  c.task.label_smoothing = 0.0  # Smoothing of the training objective (reported loss is the NLL).
  if args['tiny']:
    make_tiny(c)
    m.hidden_size, m.embed_size = 64, 32
    m.init = 'flax'  # The tiny runs the tests pin keep the initialisation they were tuned with.
  return common.finish(c, args)
