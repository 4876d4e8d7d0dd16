"""Depth Anywhere distillation: a perspective teacher on rotated cube faces of unlabelled
panoramas (`teachers`), sky/watermark masks (`masks`), face geometry (`faces`), the
affine-invariant disparity loss (`loss`), the stored pseudo-labels (`pseudo`) and the training
term (`train`)."""
