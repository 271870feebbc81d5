"""Jiangsu: GB18030 CSV file drops with Chinese headers (a local folder here, SFTP in production)."""
