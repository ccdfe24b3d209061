"""Serving: top-N lists for any ``TOP_N`` model (:mod:`.topn`), similar movies
(:mod:`.similar`) and folding in new users (:mod:`.foldin`)."""
