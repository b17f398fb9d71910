"""The shipping example: schedules a shipment for each reserved order (docs/writing-a-service.md)."""
