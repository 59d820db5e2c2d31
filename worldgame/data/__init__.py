"""Episode format (crash-safe writer, validating reader), collection policies, training segments."""

from worldgame.data.episode import SUFFIX, Episode, EpisodeWriter, list_episodes, read_episode

__all__ = ["SUFFIX", "Episode", "EpisodeWriter", "list_episodes", "read_episode"]
