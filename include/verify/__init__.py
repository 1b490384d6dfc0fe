"""Judging a batch: reach every host, judge its checks under the run's profile and waivers, write its evidence as it is judged."""
