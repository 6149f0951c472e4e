"""One module per analysis topic (clv, segment, basket, recommend, churn, forecast, satisfaction)."""
