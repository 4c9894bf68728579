"""Reports: proof of play per zone and period, planned against played."""
