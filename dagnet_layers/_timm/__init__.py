"""DAG-Net variants as seen from timm's registry (private: use timm's or our public API)."""
