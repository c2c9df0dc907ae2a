"""Which mode and persona are in force in a channel, a thread or a forum post."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.storage.engine import SessionFactory
from bot.storage.records import ChannelOverrides, effective_settings
from bot.storage.repositories import ChannelSettingsStore

modes = st.none() | st.booleans()
personas = st.none() | st.text(min_size=1, max_size=20)


def overrides(channel_id: int) -> st.SearchStrategy[ChannelOverrides]:
    return st.builds(
        ChannelOverrides,
        st.just(channel_id),
        st.just(1),
        conversation_enabled=modes,
        persona=personas,
    )


@given(overrides(10), overrides(20))
def test_what_a_thread_sets_wins_and_what_it_does_not_set_comes_from_its_parent(
    thread: ChannelOverrides, parent: ChannelOverrides
) -> None:
    settings = effective_settings(thread, parent)

    assert settings.channel_id == 10 and settings.guild_id == 1
    if thread.conversation_enabled is not None:
        assert settings.conversation_enabled is thread.conversation_enabled
        assert not settings.mode_inherited
    else:
        assert settings.conversation_enabled is bool(parent.conversation_enabled)
        assert settings.mode_inherited is (parent.conversation_enabled is not None)
    expected_persona = thread.persona if thread.persona is not None else parent.persona
    assert settings.persona == expected_persona
    assert settings.persona_inherited is (thread.persona is None and parent.persona is not None)


@given(overrides(10))
def test_a_channel_without_a_parent_has_its_own_settings_or_the_defaults(
    own: ChannelOverrides,
) -> None:
    settings = effective_settings(own, None)

    assert settings.conversation_enabled is bool(own.conversation_enabled)
    assert settings.persona == own.persona
    assert not settings.mode_inherited and not settings.persona_inherited


async def test_resolve_reads_the_thread_then_its_parent(sessions: SessionFactory) -> None:
    store = ChannelSettingsStore(sessions)
    await store.update(1, 20, conversation_enabled=True, persona="a pirate")
    await store.update(1, 10, persona="a cat")  # the thread sets a persona only

    thread = await store.resolve(1, 10, parent_id=20)
    assert (thread.conversation_enabled, thread.persona) == (True, "a cat")
    assert thread.mode_inherited and not thread.persona_inherited
    alone = await store.get(1, 10)
    assert (alone.conversation_enabled, alone.persona) == (False, "a cat")
    await store.update(1, 10, conversation_enabled=False)
    assert not (await store.resolve(1, 10, parent_id=20)).conversation_enabled
    await store.update(1, 10, clear_mode=True, clear_persona=True)
    followed = await ChannelSettingsStore(sessions).resolve(1, 10, parent_id=20)  # as stored
    assert (followed.conversation_enabled, followed.persona) == (True, "a pirate")
    # A parent of another guild lends nothing.
    assert (await store.resolve(2, 10, parent_id=20)).persona is None
