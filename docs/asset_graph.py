"""Draw the code location's asset graph, coloured by the job that materialises each asset.

    .venv/bin/python docs/asset_graph.py [--out docs/img/asset_graph.png]

Drawn from the live `Definitions` (so the picture cannot drift from the code) with networkx's
layered layout and matplotlib (no Graphviz binary needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

JOB_COLOURS = {"ingest": "#8ecae6", "web_video_ingest": "#ffb703", "weekly_retrain": "#90be6d"}


def asset_graph() -> tuple[nx.DiGraph, dict[str, str]]:
    from dap_assets.assets.automation import PIPELINE_JOBS
    from dap_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    g = nx.DiGraph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        g.add_node(key.to_user_string())
        for parent in node.parent_keys:
            g.add_edge(parent.to_user_string(), key.to_user_string())
    job_of = {}
    for job in PIPELINE_JOBS:
        for key in defs.resolve_job_def(job.name).asset_layer.executable_asset_keys:
            job_of[key.to_user_string()] = job.name
    return g, job_of


def draw(out: Path) -> Path:
    g, job_of = asset_graph()
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer", align="vertical")
    fig, ax = plt.subplots(figsize=(16, 6.5))
    nx.draw_networkx_edges(g, pos, ax=ax, arrowsize=12, edge_color="#777", node_size=3000)
    for job, colour in JOB_COLOURS.items():
        nodes = [n for n in g if job_of.get(n) == job]
        nx.draw_networkx_nodes(g, pos, nodelist=nodes, node_color=colour, node_shape="s", node_size=3000,
                               ax=ax, label=job)
    nx.draw_networkx_labels(g, pos, labels={n: n.replace("_", "_\n", 1) for n in g}, font_size=7.5, ax=ax)
    ax.legend(title="job", loc="upper center", bbox_to_anchor=(0.5, 1.1), ncol=3, markerscale=0.3, fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).with_name("img") / "asset_graph.png"))
    print(draw(Path(p.parse_args().out)))


if __name__ == "__main__":
    main()
