"""The ``semclust`` console script: export, predict, neighbors, report, cluster, group.

Training and evaluation are Hydra apps (``train.py``, ``evaluate.py``); these commands work on
an exported model and plain folders, and need no config.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from semclust.clustering.settings import ClassicSettings
from semclust.grouping.settings import METHODS, GroupOptions
from semclust.inference.options import PredictOptions
from semclust.output_folder import LINK_MODES, check_output_file

#: Errors that come from the user's input; anything else is a bug and keeps its traceback.
_USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, NotADirectoryError)


def _export(args: argparse.Namespace) -> None:
    from semclust.inference import export_model, load_export, read_cluster_names

    check_output_file(Path(args.out), Path(args.source), args.overwrite, "export")
    names = read_cluster_names(args.names) if args.names else None
    path = export_model(args.source, args.out, names)
    exported = load_export(path)  # proves the file loads before we say it is done
    print(
        f"exported {exported.num_clusters} clusters, {exported.channels}-channel "
        f"{exported.image_size}px input, to {path}"
    )


def _predict(args: argparse.Namespace) -> None:
    from semclust.inference import predict_folder

    summary = predict_folder(
        args.model,
        args.input_dir,
        args.out,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        threshold=args.threshold,
        link=args.link,
        report=not args.no_report,
        overwrite=args.overwrite,
        convert_channels=args.convert_channels,
        progress=not args.quiet,
    )
    print(
        f"{summary['images_used']} of {summary['images_found']} images clustered into "
        f"{sum(1 for size in summary['cluster_sizes'] if size)} clusters "
        f"({summary['low_confidence']} below confidence {summary['threshold']}, "
        f"{summary['errors']} unreadable) in {summary['wall_time_s']:.1f} s; outputs in {args.out}"
    )


def _neighbors(args: argparse.Namespace) -> None:
    from semclust.inference import load_any_model, nearest_images, resolve_device

    exported = load_any_model(args.model, resolve_device(args.device))
    found = nearest_images(
        exported,
        args.folder,
        args.query,
        k=args.k,
        batch_size=args.batch_size,
        embeddings_from=args.embeddings,
        progress=not args.quiet,
    )
    print("rank\tsimilarity\tpath")
    for rank, (path, score) in enumerate(found, start=1):
        print(f"{rank}\t{score:.4f}\t{path}")


def _report(args: argparse.Namespace) -> None:
    from semclust.inference.run_report import write_run_report

    default = Path(args.run_dir) / "report.html"  # the run's own report, renewed
    if args.out and Path(args.out).resolve() != default.resolve():
        check_output_file(Path(args.out), Path(args.run_dir), args.overwrite, "report")
    print(f"wrote {write_run_report(args.run_dir, args.out, args.split)}")


def _cluster(args: argparse.Namespace) -> None:
    from semclust.inference.cluster_features import cluster_feature_file

    comparison, outputs = cluster_feature_file(
        args.features,
        args.out,
        num_clusters=args.k,
        methods=args.methods,
        reductions=args.reductions,
        select_by=args.select_by,
        targets=args.targets,
        seed=args.seed,
        overwrite=args.overwrite,
        score_space=args.score_space,
    )
    print(f"{comparison.reason}\nwrote {', '.join(str(path) for path in outputs.values())}")


def _group(args: argparse.Namespace) -> None:
    from semclust.grouping import group_folder

    options = GroupOptions(
        **{name: getattr(args, name) for name in GroupOptions.__dataclass_fields__ if name in args}
    )
    summary = group_folder(args.input_dir, args.out, options)
    print(
        f"{summary['images_grouped']} of {summary['images_found']} images: {summary['groups']} "
        f"groups ({summary['images_in_groups']} images) and {summary['outliers']} outliers by "
        f"{summary['method']} at threshold {summary['threshold']:.4f} "
        f"({summary['threshold_source']}), {summary['skipped']} unreadable, in "
        f"{summary['wall_time_s']:.1f} s; outputs in {args.out}"
    )


def _threshold(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or auto: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semclust", description="Apply semclust cluster models to folders of images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="write a trained model as one self-contained .safetensors file"
    )
    export.add_argument("source", help="run directory, stage folder, model.json or .ckpt")
    export.add_argument("out", help="the .safetensors file to write")
    export.add_argument("--names", help="cluster names: text file (one per line) or JSON list")
    export.add_argument("--overwrite", action="store_true", help="replace an existing out file")
    export.set_defaults(run=_export)

    predict = commands.add_parser("predict", help="cluster every image in a folder")
    predict.add_argument("model", help="exported .safetensors (or a run directory / .ckpt)")
    predict.add_argument("input_dir", help="folder of images (searched recursively)")
    predict.add_argument("--out", required=True, help="output folder (outside the input)")
    defaults = PredictOptions()
    predict.add_argument("--batch-size", type=int, default=defaults.batch_size)
    predict.add_argument(
        "--num-workers", type=int, default=defaults.num_workers, help="DataLoader workers"
    )
    predict.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:1, ...")
    predict.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help=f"images below this confidence go to low_confidence/ (default {defaults.threshold})",
    )
    predict.add_argument(
        "--link",
        choices=LINK_MODES,
        default=defaults.link,
        help=f"how per-cluster folders refer to the inputs (default {defaults.link})",
    )
    predict.add_argument("--no-report", action="store_true", help="skip report.html")
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an earlier prediction's outputs"
    )
    predict.add_argument(
        "--convert-channels",
        action="store_true",
        help="let a grayscale model see colour images (converted to gray)",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

    neighbors = commands.add_parser("neighbors", help="the images nearest to a query image")
    neighbors.add_argument("model", help="exported .safetensors (or a run directory / .ckpt)")
    neighbors.add_argument("folder", help="folder of images to search")
    neighbors.add_argument("query", help="the query image")
    neighbors.add_argument("-k", type=int, default=10, help="how many to list (default 10)")
    neighbors.add_argument(
        "--embeddings",
        help="reuse the outputs of `semclust predict` on the same folder (refused if they "
        "come from another folder, other files or another model)",
    )
    neighbors.add_argument("--batch-size", type=int, default=defaults.batch_size)
    neighbors.add_argument("--device", default=defaults.device)
    neighbors.add_argument("--quiet", action="store_true", help="no progress bar")
    neighbors.set_defaults(run=_neighbors)

    report = commands.add_parser("report", help="write the HTML cluster report of a training run")
    report.add_argument("run_dir", help="run directory written by train.py")
    report.add_argument("--out", help="the .html file (default <run_dir>/report.html)")
    report.add_argument("--split", default="val", choices=("train", "val"))
    report.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    report.set_defaults(run=_report)

    cluster = commands.add_parser(
        "cluster",
        help="classic clustering methods on a feature matrix, the best chosen without labels",
    )
    cluster.add_argument(
        "features",
        help="an (N, D) .npy file (e.g. embeddings.npy of `semclust predict`) or a run "
        "directory (its mine stage's validation features)",
    )
    cluster.add_argument("--out", required=True, help="output folder")
    cluster.add_argument("-k", default="auto", help="number of clusters, or auto (default)")
    cluster.add_argument(
        "--methods",
        nargs="+",
        help="some of kmeans agglomerative gmm dbscan hdbscan spectral birch (default: all)",
    )
    cluster.add_argument(
        "--reductions",
        nargs="+",
        help="some of none pca umap lle spectral_embedding (default: none pca umap)",
    )
    classic = ClassicSettings()
    cluster.add_argument(
        "--select-by",
        default=classic.select_by,
        choices=("mean_rank", "silhouette", "calinski_harabasz", "davies_bouldin"),
    )
    cluster.add_argument(
        "--score-space",
        default=classic.score_space,
        choices=("reduced", "input"),
        help="score each candidate where it clustered (default) or all on the input features",
    )
    cluster.add_argument("--targets", help="optional .npy of true classes, for scoring only")
    cluster.add_argument("--seed", type=int, default=0)
    cluster.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    cluster.set_defaults(run=_cluster)

    group = commands.add_parser(
        "group", help="group near-duplicate / similar images (connected chains of links)"
    )
    group.add_argument("input_dir", help="folder of images (searched recursively; only read)")
    group.add_argument("--out", required=True, help="output folder (outside the input)")
    settings = GroupOptions()
    group.add_argument("--method", choices=METHODS, default=settings.method)
    group.add_argument(
        "--threshold",
        type=_threshold,
        help="similarity in [0, 1] that links two images, or auto (the knee of the curve "
        "of pairs found against the threshold on a sample); default: the method's",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=settings.batch_size,
        help="images grouped at once; batches are merged through one representative per group",
    )
    group.add_argument(
        "--neighbors",
        type=int,
        default=settings.neighbors,
        help="candidates per image for ssim, orb and template, and for auto",
    )
    group.add_argument(
        "--sample-size", type=int, default=settings.sample_size, help="images sampled for auto"
    )
    group.add_argument(
        "--link",
        choices=LINK_MODES,
        default=settings.link,
        help="how groups/<n>/ and outliers/ refer to the inputs (never moved)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=settings.workers,
        help="threads decoding images (and comparing pairs for ssim, orb)",
    )
    group.add_argument("--seed", type=int, default=settings.seed)
    group.add_argument(
        "--cnn-model",
        default=settings.cnn_model,
        help="torchvision model name (pretrained weights, downloaded once) or a semclust "
        "model (.safetensors, run directory, .ckpt)",
    )
    group.add_argument(
        "--cnn-weights",
        default=settings.cnn_weights,
        help="torchvision weights name, or none for random weights (nothing downloaded)",
    )
    group.add_argument("--device", default=settings.device)
    group.add_argument("--no-report", dest="report", action="store_false", help="no HTML page")
    group.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    group.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    group.set_defaults(run=_group)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except _USER_ERRORS as error:
        print(f"semclust {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
