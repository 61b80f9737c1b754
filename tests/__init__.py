"""shopkeep's tests; the folders mirror the package."""
