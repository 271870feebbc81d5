"""Sharing under the 2025 Regulations on Government Data Sharing: requests, reviews, deadlines, disputes, purpose."""
