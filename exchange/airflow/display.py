"""What a province office reads in the Airflow UI: Chinese names with English beside them, and the DAG's doc.

Pure text from province.yaml and the dataset catalogue; no Airflow import, so it is tested on its own.
"""

from __future__ import annotations

from croniter import croniter

from exchange.datasets import PROVINCE_NAMES, dataset
from exchange.province_config import ProvinceConfig, format_duration

# Stage -> (Chinese, English): the words a clerk sees on each task of a dataset's group.
STAGE_NAMES: dict[str, tuple[str, str]] = {
    "pull": ("拉取", "pull"),
    "validate": ("校验", "validate"),
    "commit": ("入湖", "commit"),
}

# The dataset catalogue has the Chinese title; an office's English-speaking colleagues read these.
DATASET_ENGLISH: dict[str, str] = {
    "e_license": "electronic licences and certificates",
    "enterprise_registration": "market entity (enterprise) registrations",
    "administrative_penalty": "administrative penalty decisions",
    "provident_fund_transfer": "housing provident fund transfers",
}

REJECTION_LINK = "拒收报告 Rejection report"


def dag_display_name(province: str) -> str:
    """`江苏省 数据交换`: what the DAG list shows instead of `exchange_jiangsu`."""
    return f"{PROVINCE_NAMES.get(province, province)} 数据交换"


def task_display_name(dataset_name: str, stage: str) -> str:
    """`电子证照 拉取`: a task's name in the grid and graph."""
    return f"{dataset(dataset_name).title} {STAGE_NAMES[stage][0]}"


def group_display_name(dataset_name: str) -> str:
    """`电子证照 e_license`: the task group of one dataset (pull -> validate -> commit)."""
    return f"{dataset(dataset_name).title} {dataset_name}"


def schedule_text(cfg: ProvinceConfig) -> tuple[str, str]:
    """The schedule in words, Chinese and English, in the province's time zone; the cron itself otherwise."""
    fields = cfg.schedule.split()
    if len(fields) == 5 and fields[2:] == ["*", "*", "*"] and fields[0].isdigit() and fields[1].isdigit():
        at = f"{int(fields[1]):02d}:{int(fields[0]):02d}"
        return f"每天 {at} ({cfg.timezone})", f"daily at {at} {cfg.timezone}"
    assert croniter.is_valid(cfg.schedule)  # province.yaml is validated on load
    return f"按 cron `{cfg.schedule}` ({cfg.timezone})", f"cron `{cfg.schedule}` in {cfg.timezone}"


def deadline_text(cfg: ProvinceConfig) -> tuple[str, str] | None:
    """province.yaml's deadline as configured: measured from the end of the run's data interval."""
    if cfg.deadline is None:
        return None
    due = format_duration(cfg.deadline)
    return f"数据区间结束后 {due} 内完成", f"{due} after the data interval ends"


def dag_doc(cfg: ProvinceConfig) -> str:
    """The DAG's doc_md: what each dataset is, when it runs, its deadline and where its reports are."""
    zh_when, en_when = schedule_text(cfg)
    due = deadline_text(cfg)
    lines = [
        f"## {dag_display_name(cfg.province)} · {cfg.province} data exchange",
        "",
        f"负责单位 Office: **{cfg.name}**",
        "",
        f"- 调度 Schedule: {zh_when} · {en_when}",
        f"- 时限 Deadline: {due[0]} · {due[1]}" if due else "- 时限 Deadline: 未设置 · none configured",
        f"- 拒收报告 Rejection reports: `EXCHANGE_HOME/reports/{cfg.province}/<batch>.rejections.html` "
        "(校验、入湖任务的“拒收报告”链接 · the link on each validate and commit task)",
        "",
        "每个数据集一组任务：拉取 → 校验 → 入湖；重跑同一数据区间不会重复入湖。",
        "Each dataset is one task group, pull -> validate -> commit, for the run's data interval; "
        "re-running an interval is a no-op.",
        "",
        "| 数据集 Dataset | 说明 Description |",
        "|---|---|",
    ]
    for name in cfg.datasets:
        lines.append(f"| {dataset(name).title} `{name}` | {DATASET_ENGLISH.get(name, name)} |")
    for name, upstream in cfg.depends_on.items():
        if upstream:
            titles = "、".join(dataset(u).title for u in upstream)
            lines += ["", f"{dataset(name).title}在{titles}入湖后开始。 "
                          f"{name} starts after {', '.join(upstream)} committed."]
    return "\n".join(lines)
