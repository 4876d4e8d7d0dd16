"""Tiny random-config teachers and maskers saved as local folders (no download): DepthAnything
(DINOv2 backbone), GroundingDINO (Swin + BERT, a 10-word vocabulary) and SAM."""

from __future__ import annotations

from pathlib import Path


def tiny_depth_anything(folder: Path) -> Path:
    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    bb = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, patch_size=14,
                      image_size=56, out_features=["stage1", "stage2"], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=bb, neck_hidden_sizes=[8, 16], fusion_hidden_size=8, head_hidden_size=8,
                              reassemble_factors=[2, 1], reassemble_hidden_size=16, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(cfg).save_pretrained(folder)
    return folder


def tiny_grounded_sam(folder: Path) -> tuple[Path, Path]:
    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torch
    from transformers import (
        BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
        GroundingDinoProcessor, SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
        SamPromptEncoderConfig, SamVisionConfig, SwinConfig,
    )

    torch.manual_seed(0)
    det_dir, seg_dir = folder / "gdino", folder / "sam"
    det_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "sky", "watermark", "a", "the"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}), tokenizer=tok
    ).save_pretrained(det_dir)
    text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    swin = SwinConfig(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=2, image_size=64,
                      out_features=["stage1", "stage2"])
    GroundingDinoForObjectDetection(GroundingDinoConfig(
        backbone_config=swin, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10,
        num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32, use_timm_backbone=False,
    )).save_pretrained(det_dir)
    SamModel(SamConfig(
        vision_config=SamVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, output_channels=8,
                                      image_size=64, patch_size=16, mlp_dim=32, global_attn_indexes=[0], window_size=2,
                                      num_pos_feats=4),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=8, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, mlp_dim=16,
                                                 iou_head_hidden_dim=8),
    )).save_pretrained(seg_dir)
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}, mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16},
    )).save_pretrained(seg_dir)
    return det_dir, seg_dir
