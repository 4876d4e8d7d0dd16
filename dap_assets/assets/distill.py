"""Depth Anywhere branch: `perspective_pseudo_labels` — a perspective teacher on randomly rotated
cube faces of the unlabeled pool, sky/watermark masked (`dap_model.distill`)."""

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, asset

from dap_assets.resources import DapConfigResource, StorageResource, show_progress
from dap_model import layout
from dap_model.distill.pseudo import build_perspective_pseudo_labels


@asset(group_name="distill", deps=[AssetKey("unlabeled_pool"), AssetKey("dap_depth_model")],
       code_version="distill-1", kinds={"pytorch"})
def perspective_pseudo_labels(context: AssetExecutionContext, dap: DapConfigResource,
                              storage: StorageResource) -> MaterializeResult:
    """Teacher disparity + validity on K rotated cube-face sets per pool panorama, under `distill/`.

    With `distill.teacher=dap` the teacher is this run's stage-3 model (hence the dependency on
    `dap_depth_model`); trainings with `distill.enabled` read the latest set from the store on their
    next run (the weekly re-training), which keeps the asset graph acyclic."""
    cfg, store = dap.get(), storage.store()
    res = build_perspective_pseudo_labels(cfg, store, progress=show_progress())
    m = res.manifest
    kept = m[m["kept"]]
    from dap_model.versioning import store_hash

    return MaterializeResult(data_version=DataVersion(store_hash(store, layout.DISTILL_MANIFEST)), metadata={
        "manifest": store.uri(layout.DISTILL_MANIFEST),
        "teacher": res.teacher,
        "teacher_source": res.teacher_source,
        "mask": res.masker,
        "face_w": res.face_w,
        "samples": len(kept),
        "dropped_rotations": int((~m["kept"]).sum()),
        "dropped_faces": int(m["dropped_faces"].map(len).sum()),
        "mean_valid_fraction": float(kept["valid_fraction"].mean()) if len(kept) else 0.0,
        "shards": len(res.shards),
        "head": MetadataValue.md("```\n" + m.drop(columns=["face_valid_fraction"]).head(8).to_string(index=False) + "\n```"),
    })
