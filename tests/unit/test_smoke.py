from toggles.models import Capability, ProfileVersion


def test_demo_seed__fresh_database__creates_tenant_profile_and_red_lines(demo):
    assert demo.tenant.slug == "demo"
    assert Capability.objects.filter(is_red_line=True).count() == 2
    assert ProfileVersion.objects.filter(profile__tenant=demo.tenant).count() == 1
    assert len(demo.new_tokens) == 3
