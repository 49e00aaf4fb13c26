"""Task 4: a hash stored one HSET at a time, then read back with HGETALL."""

from redis_connection import connect

SCHOOLS = {"Portland": 50, "Seattle": 80, "New York": 20, "Bogota": 20, "Cali": 40, "Paris": 2}


def main() -> None:
    client = connect()
    for city, value in SCHOOLS.items():
        added = client.hset("HolbertonSchools", city, value)
        print(f"Reply: {added}")
    print(client.hgetall("HolbertonSchools"))
    client.close()


if __name__ == "__main__":
    main()
