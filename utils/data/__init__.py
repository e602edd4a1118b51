"""COCO-format data: checked JSON, the dataset with Detectron's cleaning,
COCO evaluation, category names, the synthetic dataset, training batches
and the seeded order sampler."""
