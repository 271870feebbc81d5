"""A stand-in for Jiangsu's file drops: daily GB18030 CSV files and their manifests in `<root>/drop/`.

Like Jiangsu's exporter, it writes each file as `<name>.tmp` and renames it, the data file first, then
the data office's detached signature over the manifest (`<manifest>.sig`), and the day's manifest (file
names, sizes, SHA-256) last; rewriting a day removes its manifest first, so a reader never takes a
half-rewritten day for a complete drop. Serve the folder over SFTP with
:class:`adapters.jiangsu.sftp_server.SftpServer`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from adapters.authenticity import SIGNATURE_SUFFIX, SourceTrust, office, sandbox_keyring, sign
from adapters.jiangsu import manifest, native
from adapters.jiangsu.adapter import DROP_DIR_SETTING, MAPPING_FILE, JiangsuAdapter
from adapters.mapping import ProvinceMapping
from exchange.signing.keyring import Keyring
from exchange.synthetic import DEFECT_COLUMN


class JiangsuSandbox:
    """Writes canonical records as Jiangsu would drop them: one file per dataset per local day."""

    province = "jiangsu"

    def __init__(self, root: Path, keyring: Keyring | None = None) -> None:
        self.root = root
        self.drop = root / "drop"
        self.drop.mkdir(parents=True, exist_ok=True)
        self.mapping = ProvinceMapping.load(MAPPING_FILE)
        # Jiangsu's data office signs its manifests; its public key is in this keyring's trust bundle.
        self.keyring = keyring or sandbox_keyring(root)

    @property
    def trust(self) -> SourceTrust:
        """The trust bundle that holds this sandbox's signing key (what a hub reading it must trust)."""
        return SourceTrust(self.keyring.dir)

    def seed(self, dataset: str, table: pa.Table) -> None:
        """Append canonical records to the drop files of their update day (Asia/Shanghai).

        A day that already has a file gets it rewritten with the old rows and the new ones, ordered by
        update time; the rewrite goes through a `.tmp` file and a rename, as a careful exporter would.
        """
        mapping = self.mapping.dataset(dataset)
        if DEFECT_COLUMN in table.column_names:
            table = table.drop_columns([DEFECT_COLUMN])
        rendered = mapping.from_canonical(table)
        local = table.column("updated_at").cast(pa.timestamp("us", tz=mapping.timezone))
        days = pc.strftime(local, format="%Y%m%d")
        updated_col = mapping.native_name("updated_at")
        for day in pc.unique(days).to_pylist():
            rows = rendered.filter(pc.equal(days, day))
            path = self.drop / f"{mapping.source}_{day}.csv"
            if path.exists():
                old = native.read_table(path.read_bytes(), str(path))
                rows = pa.concat_tables(
                    [_strings(old, mapping.native_columns), _strings(rows, mapping.native_columns)]
                )
                # Arrow's sort is stable: equal update times keep old-then-new order. The local
                # "YYYY-MM-DD HH:MM:SS" text sorts in time order.
                rows = rows.take(pc.sort_indices(rows, sort_keys=[(updated_col, "ascending")]))
            self.deliver(path.name, native.to_bytes(rows, mapping.native_columns))

    def deliver(self, name: str, payload: bytes) -> None:
        """(Re)deliver one data file: withdraw its day's manifest, write the file, then a fresh manifest."""
        source, _, stamp = name.removesuffix(".csv").rpartition("_")
        day = datetime.strptime(stamp, "%Y%m%d").date()
        manifest_path = self.drop / manifest.manifest_name(source, day)
        signature_path = manifest_path.with_name(manifest_path.name + SIGNATURE_SUFFIX)
        manifest_path.unlink(missing_ok=True)
        native.write_atomically(self.drop / name, payload)
        rendered = manifest.render(source, day, {name: payload})
        signed = sign(self.keyring.signer(office(self.province)), self.province, manifest_path.name, rendered)
        # The signature lands before the manifest: a drop that looks complete is also signed.
        native.write_atomically(signature_path, signed.to_bytes())
        native.write_atomically(manifest_path, rendered)

    def start(self) -> None:
        """Nothing to start: the drop folder is the interface."""

    def stop(self) -> None:
        """Nothing to stop."""

    def env(self) -> dict[str, str]:
        """Point the Jiangsu adapter at this sandbox's drop folder."""
        return {DROP_DIR_SETTING: str(self.drop)}

    def adapter(self) -> JiangsuAdapter:
        """An adapter reading this sandbox's drop folder."""
        return JiangsuAdapter(self.drop, self.mapping, trust=self.trust)


def _strings(table: pa.Table, columns: list[str]) -> pa.Table:
    return pa.table({name: table.column(name).cast(pa.string()) for name in columns})


def create(root: Path, keyring: Keyring | None = None) -> JiangsuSandbox:
    """A Jiangsu sandbox keeping its drop folder under `root`, signing with the office key in `keyring`
    (default: see :func:`adapters.authenticity.sandbox_keyring`)."""
    return JiangsuSandbox(root, keyring)
