package freelist

import "testing"

func TestList(t *testing.T) {
	l := New[int](2)
	if v, ok := l.Get(); ok || v != 0 {
		t.Fatalf("empty list gave %d, %v", v, ok)
	}
	if !l.Put(1) || !l.Put(2) {
		t.Fatal("a list of two refused one of two values")
	}
	if l.Put(3) {
		t.Fatal("a full list kept a third value")
	}
	got := map[int]bool{}
	for range 2 {
		v, ok := l.Get()
		if !ok {
			t.Fatal("a kept value was not given back")
		}
		got[v] = true
	}
	if !got[1] || !got[2] {
		t.Fatalf("got %v, want 1 and 2", got)
	}
	if _, ok := l.Get(); ok {
		t.Fatal("an emptied list gave a value")
	}
}
