"""kopf operator that reconciles TradingSystem resources."""
