"""`citab report`: one HTML page per project, readable offline, that a reviewer reads instead of
a folder tree. Rendered with Jinja2 from templates shipped in the package; every text that
comes from the user's files is escaped; figures are copied beside the page; the folder is
replaced atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from citab_cli import __version__
from citab_cli.core import atomic
from citab_cli.core.data.project import PAGE_FILE, Project
from citab_cli.core.errors import CitabError
from citab_cli.core.evaluation.evaluation_report import created
from citab_cli.core.workflows import page_data, page_reports

#: The template of the page, in citab_cli/templates/.
TEMPLATE = "report.html.j2"
#: The width of a figure's cell in the page's grid (two a row in its 1180 px column, see the
#: template's CSS): a figure that needs more to keep its text legible spans the row.
FIGURE_CELL_PX = 560
#: Sections of the page in order: (anchor, title, context key).
SECTIONS = (
    ("project", "1. The project", "cohorts"),
    ("qc", "2. Scan quality control", "qc"),
    ("headers", "3. Header semantics", "headers"),
    ("runs", "4. Pretraining runs", "runs"),
    ("evaluations", "5. Probes, fine-tunes and studies", "evaluations"),
    ("explanations", "6. Explanations", "explanations"),
)


def _environment():
    from importlib.resources import files

    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("citab_cli") / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def context(project: Project, gallery: page_data.Gallery) -> dict:
    """Everything the page shows; a section's entry is empty when its data do not exist."""
    settings = project.load_settings()
    reports = page_reports.reports_section(project, gallery)
    evaluations = {k: reports[k] for k in ("probe", "finetune", "study") if reports[k]}
    data = {
        "project": str(project.root.resolve()),
        "version": __version__,
        "created": created(),
        "settings": {
            "shape": "×".join(str(s) for s in settings.image.shape),
            "spacing": "×".join(f"{s:g}" for s in settings.image.spacing),
            "encoder": settings.header_encoder,
        },
        "cohorts": page_data.cohorts_section(project),
        "qc": page_data.qc_section(project, gallery),
        "headers": page_data.headers_section(project),
        "runs": page_data.runs_section(project, gallery),
        "evaluations": evaluations,
        "explanations": reports["explain"],
        "narrow": FIGURE_CELL_PX,
    }
    data["sections"] = [(anchor, title) for anchor, title, key in SECTIONS if data[key]]
    return data


def write_page(project: Project, message: Callable[[str], None] = lambda text: None) -> Path:
    """Write page/index.html and its figures (replacing the folder atomically); its path."""
    if not project.exists():
        raise CitabError(f"{project.root} is not a citab project (no citab.yaml); pass --project")
    if not project.cohorts():
        raise CitabError(f"{project.root} holds no cohort yet; run `citab ingest` first")
    template = _environment().get_template(TEMPLATE)
    with atomic.staged_directory(project.page_dir) as stage:
        gallery = page_data.Gallery(stage / "figures")
        data = context(project, gallery)
        message(f"{gallery.count} figures, {len(data['sections'])} sections")
        atomic.write_text(stage / PAGE_FILE, template.render(**data))
    return project.page_dir / PAGE_FILE
