// SnapExport: snapshots and export bundles (issue 6).
