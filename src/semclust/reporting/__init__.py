"""Static HTML reports of clusterings, Grad-CAM heatmaps and confusion-matrix plots.

Nothing here imports Lightning, Hydra or the training stages. scikit-learn's t-SNE and the
grad-cam package are imported only when a map or a heatmap is drawn, so importing this package
is cheap. The report of a training run is
:func:`semclust.inference.run_report.write_run_report`.
"""

from semclust.reporting.confusion import save_confusion_matrix
from semclust.reporting.gradcam import GradCamExplainer, grad_cam_for
from semclust.reporting.k_choice import KChoiceSummary
from semclust.reporting.query_curves import QueryCurves, scores_by_query_count
from semclust.reporting.report import write_report
from semclust.reporting.report_data import ReportData

__all__ = [
    "GradCamExplainer",
    "KChoiceSummary",
    "QueryCurves",
    "ReportData",
    "grad_cam_for",
    "scores_by_query_count",
    "save_confusion_matrix",
    "write_report",
]
