"""Backend-agnostic building blocks. Never imports a training framework."""
