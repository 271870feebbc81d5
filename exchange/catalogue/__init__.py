"""The unified government data catalogue (政务数据目录): items built from the contracts, published signed."""
