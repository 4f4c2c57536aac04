"""A real ORM workload for perfkit's N+1 test: SQLAlchemy over psycopg2 (which interpolates the
parameter values into the SQL text on the client side).

usage: /usr/bin/python3 orm_loop.py SOCKET_DIR PORT MODE APPLICATION_NAME [PAUSE_SECONDS]

MODE lazy     for each book, touch book.author: one SELECT per book (the N+1 loop)
     selectin eager loading with a second query "WHERE authors.id IN (...)"
     joined   eager loading with a JOIN
PAUSE_SECONDS sleeps between the books of a lazy loop; with AUTOCOMMIT=1 in the environment each
query is its own transaction (no transaction block around the loop).
"""
import os
import sys
import time

from sqlalchemy import Column, ForeignKey, Integer, Text, create_engine
from sqlalchemy.orm import declarative_base, joinedload, relationship, selectinload, sessionmaker

Base = declarative_base()


class Author(Base):
    __tablename__ = "authors"
    id = Column(Integer, primary_key=True)
    name = Column(Text)


class Book(Base):
    __tablename__ = "books"
    id = Column(Integer, primary_key=True)
    title = Column(Text)
    author_id = Column(Integer, ForeignKey("authors.id"))
    author = relationship(Author, lazy="select")


def main():
    sockdir, port, mode, appname = sys.argv[1:5]
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    options = {"connect_args": {"application_name": appname}}
    if os.environ.get("AUTOCOMMIT") == "1":
        options["isolation_level"] = "AUTOCOMMIT"
    engine = create_engine(f"postgresql+psycopg2:///postgres?host={sockdir}&port={port}", **options)
    session = sessionmaker(bind=engine)()

    query = session.query(Book).order_by(Book.id)
    if mode == "selectin":
        query = query.options(selectinload(Book.author))
    elif mode == "joined":
        query = query.options(joinedload(Book.author))
    names = []
    for book in query.all():
        names.append(book.author.name)
        if pause:
            time.sleep(pause)
    session.commit()
    print(f"{mode}: {len(names)} books")


if __name__ == "__main__":
    main()
