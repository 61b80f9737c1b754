"""The shop's actors; see issue."""
