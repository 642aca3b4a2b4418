"""A Singer target that keeps a DuckDB file equal to the source (tap-dataplatforms' demo
warehouse): see :mod:`dataplatforms_warehouse.target`."""

from dataplatforms_warehouse.target import Loader, main, sql_type, widen

__all__ = ["Loader", "main", "sql_type", "widen"]
