"""SQLAlchemy Core tables and one repository per aggregate."""
