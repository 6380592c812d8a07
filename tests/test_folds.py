"""Contiguous folds and hold-out splits."""

from __future__ import annotations

import unittest

from parameterized import parameterized

from segq_monai.data import contiguous_folds, holdout_split, split_fold


class TestFolds(unittest.TestCase):
    @parameterized.expand([(n, k) for n in (2, 5, 7, 10, 72, 73) for k in (2, 3, 5) if k <= n])
    def test_contiguous_cover_sizes(self, n, k):
        folds = contiguous_folds(n, k)
        self.assertEqual(len(folds), k)
        self.assertEqual([i for f in folds for i in f], list(range(n)))  # contiguous, in order, each index once
        sizes = [len(f) for f in folds]
        self.assertLessEqual(max(sizes) - min(sizes), 1)
        self.assertEqual(sorted(sizes, reverse=True), sizes)

    def test_hand_computed(self):
        self.assertEqual(contiguous_folds(7, 3), [[0, 1, 2], [3, 4], [5, 6]])
        self.assertEqual(contiguous_folds(4, 4), [[0], [1], [2], [3]])

    @parameterized.expand([(5, 1), (5, 0), (3, 4), (0, 2), (5, 2.0)])
    def test_bad_num_folds(self, n, k):
        with self.assertRaisesRegex(ValueError, "num_folds"):
            contiguous_folds(n, k)

    @parameterized.expand([(10, 3), (72, 5)])
    def test_split_fold(self, n, k):
        items = [f"case{i}" for i in range(n)]
        held_all = []
        for fold in range(k):
            train, held = split_fold(items, fold, k)
            self.assertFalse(set(train) & set(held))
            self.assertEqual(sorted(train + held), sorted(items))
            first = items.index(held[0])
            self.assertEqual(held, items[first : first + len(held)])  # a contiguous block
            self.assertEqual(train, [x for x in items if x not in held])  # order kept
            held_all += held
        self.assertEqual(held_all, items)  # every case held out exactly once

    def test_split_fold_keeps_groups_together(self):
        # 5 slices, 3 augmented copies each: no copy of a held-out slice may be in the training side
        items = [{"group": g, "copy": c} for g in "abcde" for c in range(3)]
        held_all = []
        for fold in range(2):
            train, held = split_fold(items, fold, 2, group_key="group")
            self.assertEqual({x["group"] for x in train} & {x["group"] for x in held}, set())
            held_all += held
        self.assertEqual([x["group"] for x in held_all], list("aaabbbcccdddeee"))  # blocks of 3 then 2 groups
        self.assertEqual({x["group"] for x in split_fold(items, 0, 2, group_key="group")[1]}, set("abc"))

    def test_split_fold_missing_group(self):
        with self.assertRaisesRegex(ValueError, "no key 'group'"):
            split_fold([{"group": 1}, {}], 0, 2, group_key="group")

    def test_split_fold_bad_fold(self):
        with self.assertRaisesRegex(ValueError, "fold must be"):
            split_fold(list(range(5)), 2, 2)

    @parameterized.expand(
        [
            ("end", 0.2, list(range(8)), [8, 9]),
            ("start", 0.2, [2, 3, 4, 5, 6, 7, 8, 9], [0, 1]),
            ("middle", 0.3, [0, 1, 2, 6, 7, 8, 9], [3, 4, 5]),
            ("end", 0.01, list(range(9)), [9]),
            ("end", 0.99, [0], list(range(1, 10))),
        ]
    )
    def test_holdout(self, position, fraction, train, held):
        self.assertEqual(holdout_split(list(range(10)), fraction, position), (train, held))

    @parameterized.expand([(0.0, "end"), (1.0, "end"), (float("nan"), "end"), (0.5, "random")])
    def test_holdout_bad(self, fraction, position):
        with self.assertRaises(ValueError):
            holdout_split(list(range(10)), fraction, position)


if __name__ == "__main__":
    unittest.main()
