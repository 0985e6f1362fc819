def test_health_needs_no_key(api):
    r = api.get("/health", role=None)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_enrol_and_read_back(api):
    m = api.enrol(email="Ivan@Example.COM", phone="8 (916) 555-12-34")
    assert m["email"] == "ivan@example.com"
    assert m["phone"] == "+79165551234"
    r = api.get(f"/v1/members/{m['id']}")
    assert r.status_code == 200
    assert r.json() == m


def test_ready_checks_the_database(api):
    r = api.get("/ready", role=None)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
