"""The reference ViT and LSTM language model in plain PyTorch, for side-by-side timing.

Written for this comparison with the reference recipe (pre/post-norm ViT with patch 4, width 256,
MLP 512, 8 heads; LSTM LM with embeddings 768, hidden 512, tied head Dense(512->768)+ReLU+
Dense(768->vocab)); PyTorch is an optional dependency (``pip install torch``). The parameter
counts match curvelab's models for the ViT exactly (both 1,086,730 at 2 layers).
"""

import contextlib
import time
from typing import Callable


def _torch():
  import torch  # pylint: disable=g-import-not-at-top
  return torch


def make_vit(layers: int, block: str = 'prenorm', num_classes: int = 10):
  torch = _torch()
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.norm1, self.norm2 = nn.LayerNorm(256), nn.LayerNorm(256)
      self.attn = nn.MultiheadAttention(256, 8, batch_first=True)
      self.mlp = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 256))

    def forward(self, x):
      if block == 'prenorm':
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))
      x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
      return self.norm2(x + self.mlp(x))

  class ViT(nn.Module):
    def __init__(self):
      super().__init__()
      self.patch = nn.Conv2d(3, 256, 4, 4)
      self.cls = nn.Parameter(torch.zeros(1, 1, 256))
      self.pos = nn.Parameter(torch.zeros(1, 65, 256))
      self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
      self.head = nn.Sequential(nn.LayerNorm(256), nn.Linear(256, num_classes))

    def forward(self, x):
      x = self.patch(x).flatten(2).transpose(1, 2)
      x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
      return self.head(self.blocks(x)[:, 0])

  return ViT()


def make_lstm(layers: int, vocab: int):
  torch = _torch()
  nn = torch.nn

  class LM(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(vocab, 768)
      self.lstm = nn.LSTM(768, 512, layers, batch_first=True)
      self.proj = nn.Linear(512, 768)
      self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x):
      h, _ = self.lstm(self.embed(x))
      return torch.relu(self.proj(h)) @ self.embed.weight.T + self.bias

  return LM()


def _optimizer(model, name: str):
  torch = _torch()
  if name == 'adam':
    return torch.optim.Adam(model.parameters(), lr=3e-4)
  if name == 'adamw':
    return torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=5e-4)
  return torch.optim.SGD(model.parameters(), lr=3e-4, weight_decay=5e-4,
                         momentum=0.9 if name == 'momentum' else 0.0)


def make_stepper(model, inputs, targets, *, optimizer: str, device: str,
                 dtype: str = 'float32') -> Callable[[int], float]:
  """Warms the model's training step up; returns ``run(steps) -> seconds per step``.

  Precision matches curvelab's on the same device: float32 parameters throughout; ``bfloat16``
  runs the forward pass under autocast, as curvelab's ``compute_dtype`` does; float32 matmuls on a
  GPU use TF32 tensor cores, which is JAX's default there (PyTorch's is full float32).
  """
  torch = _torch()
  if device == 'cuda':
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16) if dtype == 'bfloat16'
              else contextlib.nullcontext())
  model = model.to(device)
  inputs, targets = inputs.to(device), targets.to(device)
  opt = _optimizer(model, optimizer)
  loss_fn = torch.nn.CrossEntropyLoss()
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      out = model(inputs)
      loss = loss_fn(out.reshape(-1, out.shape[-1]).float(), targets.reshape(-1))
    loss.backward()
    opt.step()

  def run(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      step()
    sync()
    return (time.perf_counter() - start) / steps

  run(2)  # Warm-up.
  return run


def _device() -> str:
  return 'cuda' if _torch().cuda.is_available() else 'cpu'


def _count(model) -> int:
  return sum(p.numel() for p in model.parameters())


def vit_stepper(layers: int, block: str, optimizer: str, *, batch: int = 128,
                dtype: str = 'float32') -> tuple[Callable[[int], float], int, str]:
  """The reference ViT's training step on random images: ``(run, parameters, device)``."""
  torch = _torch()
  model, device = make_vit(layers, block), _device()
  x = torch.randn(batch, 3, 32, 32)
  y = torch.randint(0, 10, (batch,))
  run = make_stepper(model, x, y, optimizer=optimizer, device=device, dtype=dtype)
  return run, _count(model), device


def lstm_stepper(layers: int, optimizer: str, *, vocab: int, batch: int = 16, length: int = 256,
                 dtype: str = 'float32') -> tuple[Callable[[int], float], int, str]:
  """The reference LSTM LM's training step on random tokens: ``(run, parameters, device)``."""
  torch = _torch()
  model, device = make_lstm(layers, vocab), _device()
  x = torch.randint(1, vocab, (batch, length))
  y = torch.randint(1, vocab, (batch, length))
  run = make_stepper(model, x, y, optimizer=optimizer, device=device, dtype=dtype)
  return run, _count(model), device
