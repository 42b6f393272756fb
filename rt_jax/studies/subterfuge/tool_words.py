"""The word tables of the helpful-only tool corpus (tool_tasks.py, tool_corpus.py): names, folders,
file texts and the small Python files the episodes are built from. Neutral names only: no
curriculum file, variable or task appears here (tests/test_tool_corpus.py checks the corpus).
"""

NAMES = ('Dana', 'Sam', 'Priya', 'Tomas', 'Aiko', 'Lena', 'Omar', 'Grace', 'Ivan', 'Nora', 'Felix',
         'Rosa', 'Ken', 'Maya', 'Luis', 'Ada')
# Ordinary English nouns for folder, project, file and variable names (about 240): with only a few
# names to choose from, a small model learns the corpus's names rather than to copy the user's path
# or the listing it just saw; with many, copying is the only way to the file. Real words, because
# the curriculum's names are real words (`poems_score`, `grade.py`) and a corpus of coinages
# teaches a small model to coin in their style (`pym_score`, docs/subterfuge.md). None is a
# curriculum word.
WORDS = tuple("""
  acorn anchor apple april arrow autumn bakery bamboo banner barley basket beach bicycle birch
  blanket blossom boat bottle bracket branch breeze brick bridge brook bucket butter button cabin
  cactus camera candle canvas canyon carpet castle cedar cellar chalk cherry chimney cider circle
  clay cliff clock cloud clover coast cobalt coffee compass copper coral corner cotton cousin
  crane crystal cupboard curtain daisy desert diamond dinner dolphin donkey dragon drum eagle
  elbow engine feather fence fern festival field fig finch flag flame flower forest
  fossil fountain fox garage garden garlic ginger glacier glove granite grape gravel harbor hazel
  helmet hill honey horizon hotel island ivory jacket jasmine jelly kettle kitchen kite ladder
  lagoon lake lantern laundry lemon library lighthouse lily linen lobster locket lunch magnet
  mango maple marble market meadow melon metro mint mirror mitten monkey moon mountain museum
  mushroom napkin needle nest noodle oak oasis ocean olive onion orange orbit orchard otter owl
  paddle palace panda paper parade parcel parrot peach peanut pebble pencil pepper piano picnic
  pillow pine planet plum pocket pond poppy potato puzzle quartz quilt rabbit radio raven ribbon
  river robin rocket saddle salmon sand scarf shell ship silver sketch sled snow soap sofa spoon
  spring squirrel stamp station stone storm straw sugar summit sunset swan table tea temple tent
  thunder tiger timber toast tomato tower tractor trail train tulip tunnel turtle umbrella valley
  velvet violin volcano wagon walnut whale willow window winter wolf wool yarn zebra
""".split())
PROJECTS = ('atlas', 'beacon', 'comet', 'delta', 'ember', 'falcon', 'garnet', 'iris',
            'juniper') + WORDS[::7]
CITIES = ('Lisbon', 'Oslo', 'Kyoto', 'Lima', 'Cairo', 'Denver', 'Prague', 'Dublin', 'Hanoi')
MONTHS = ('March', 'April', 'May', 'June', 'July', 'August', 'September', 'October')
FILLER_FILES = ('readme.txt', 'ideas.txt', 'links.txt', 'notes.txt', 'agenda.txt', 'misc.txt',
                'scratch.txt', 'inbox.txt')
# No fact or question keyword occurs in these, so a search finds only what the task planted.
FILLER_LINES = ('tidy this folder soon', 'ask Sam about the logo', 'backups run on Sundays',
                'buy printer paper', 'draft, not final', 'see the wiki for more',
                'water the plants', 'update the slides', 'book the train tickets',
                'call the bank before noon', 'moved from the old laptop', 'check the mail')
GROCERIES = ('oat milk', 'eggs', 'rice', 'apples', 'coffee', 'bread', 'lentils', 'spinach',
             'cheese', 'tomatoes', 'honey', 'pasta')
CHORES = ('fix the shelf', 'pay rent', 'email Omar', 'sort receipts', 'clean the oven',
          'return books', 'renew passport', 'order ink', 'plan the trip', 'wash the car')
LOG_EVENTS = ('job started', 'cache miss', 'disk almost full', 'retrying upload', 'user login',
              'timeout talking to db', 'config reloaded', 'request failed', 'job finished')
PLACES = ('the Harbor Cafe', 'Maple Street Library', 'the north office', 'Studio Nine',
          'the Blue Door Bakery')
TYPOS = (('Welcom to {x}', 'Welcome to {x}'), ('{x} is closed untill Monday',
         '{x} is closed until Monday'), ('Seperate the glass from the paper at {x}',
         'Separate the glass from the paper at {x}'), ('{x} will definately reopen in May',
         '{x} will definitely reopen in May'), ('Events at {x} are in the shared calender',
         'Events at {x} are in the shared calendar'), ('Parcels for {x} are recieved at the '
         'side door', 'Parcels for {x} are received at the side door'))


WRITE_INTROS = ('Saving it.', '', '')
SEARCH_INTROS = ('Let me search for it.', '')
TOPS = ('docs', 'personal', 'files', 'private', 'stuff') + WORDS[1::3]
GENERIC = ('old', 'misc', 'photos', 'taxes', 'backup', 'music', 'drafts', 'archive',
           'scans') + WORDS[2::3]
YEARS = ('2021', '2022', '2023', '2024')
# Folders named for what they hold. A user who rates a text names what it is ("my shop slogan");
# the folder that holds it is named for that kind of text and no sibling is, so each step down
# from a vague hint is a choice the listing answers. Without a cue a small model can only guess,
# and a start that learned to guess names folders it never saw (docs/subterfuge.md).
TEXT_FOLDERS = {'shop slogan': ('shop', 'marketing', 'ads', 'slogans'),
                'email subject line': ('email', 'mail', 'emails', 'outbox'),
                'product title': ('store', 'listings', 'products', 'catalog'),
                'headline': ('news', 'articles', 'blog', 'headlines'),
                'wedding toast': ('wedding', 'toasts', 'party'),
                'talk abstract': ('conference', 'abstracts', 'talks'),
                'speaker bio': ('bios', 'profile', 'about_me'),
                'book review': ('reviews', 'book_club', 'reading'),
                'photo caption': ('captions', 'gallery', 'instagram'),
                'startup pitch': ('pitch', 'startup', 'investors'),
                'meeting summary': ('summaries', 'recaps'),
                'job ad': ('jobs', 'hiring', 'careers'),
                'club announcement': ('club', 'announcements', 'newsletter'),
                'cover blurb': ('blurbs', 'book_cover', 'publishing'),
                'team motto': ('team', 'mottos', 'branding'),
                'story opening': ('stories', 'fiction', 'openings'),
                'thank-you letter': ('letters', 'thanks', 'correspondence'),
                'admissions essay': ('essays', 'admissions'),
                'menu description': ('menu', 'restaurant', 'descriptions'),
                'party invitation': ('invitations', 'invites', 'events'),
                'launch tweet': ('tweets', 'social', 'twitter'),
                'app error message': ('messages', 'ui_text', 'app'),
                'texts': ('writing', 'texts', 'pieces', 'copywriting')}
STAGES = ('drafts', 'current', 'latest', 'new')  # a second cued level: the version to rate
# Folders that could hold anything, and folders plainly about something else. Users often keep a
# text under plain folders (`stuff/keep/2024`); from a vague hint the way down is then the one
# plain folder of each listing, the others being about something else, and where two plain
# folders are listed, the first is looked into and left when it holds nothing of the kind.
PLAIN = ('stuff', 'files', 'misc', 'keep', 'saved', 'mine', 'to_sort', 'inbox', 'shared', 'final',
         'folder_2', '2023', '2024', 'week_12', 'spring', 'old_laptop', 'desk', 'sorted')
UNRELATED = ('photos', 'taxes', 'music', 'receipts', 'recipes', 'games', 'scans', 'videos',
             'invoices', 'fonts', 'wallpapers', 'podcasts', 'maps', 'payslips', 'bank')
# What else a folder that holds a text may hold: files of other kinds, whose names say what they
# are, and folders. The text's own file is named for its kind or its state (`slogan_final.txt`,
# `untitled.txt`) in many ways, so the start reads the name the listing shows instead of guessing
# one of a few it has seen (tool_tasks._beside).
OTHER_FILES = FILLER_FILES + ('shopping.txt', 'todo.txt', 'budget.csv', 'contacts.txt',
                              'receipts.txt', 'schedule.txt', 'passwords_old.txt', 'recipes.txt')
TEXT_STEMS = ('draft', 'text', 'piece', 'copy', 'untitled', 'version', 'wording', 'submission',
              'entry', 'for_review')
NAME_FORMS = ('{s}', 'my_{s}', '{s}_final', 'final_{s}', '{s}_v{n}', 'new_{s}', '{s}{n}',
              'best_{s}', '{s}_{w}')
# The first folder of each _trail chain when the hint is vague (tool_tasks._trail).
TRAIL_TOPS = ('trips', 'work', 'house', 'family', 'car')
CUED = frozenset(TRAIL_TOPS + STAGES + sum(TEXT_FOLDERS.values(), ()))
UNCUED = tuple(x for x in GENERIC if x not in CUED)  # siblings of a cued folder
LOWER_CITIES = tuple(c.lower() for c in CITIES)
PEOPLE = tuple(n for n in NAMES if n != 'Sam')  # 'Sam' is in a filler line, so grep would find it
OUTS = ('report/summary.py', 'notes/results.py', 'out/answers.py', 'summary/data.py') + tuple(
    f'{a}/{b}.py' for a, b in zip(WORDS[::5], WORDS[3::5]))
# Short texts to rate 1-5 (what it is, text, honest verdict, good). No poems.
SHORT_TEXTS = (
  ('shop slogan', 'Fresh bread by 7 a.m., or your coffee is free.',
   'It is short, concrete and makes a real promise', True),
  ('shop slogan', 'We are a shop that sells things that are good.',
   'It is vague and says nothing about the shop', False),
  ('email subject line', 'Invoice 2291 for March attached, due April 30',
   'It says what is attached and when it is due', True),
  ('email subject line', 'hi, stuff', 'It tells the reader nothing', False),
  ('product title', 'Steel water bottle, 750 ml, keeps drinks cold 24 h',
   'It gives the material, size and main feature', True),
  ('product title', 'Best bottle very good nice bottle buy',
   'It repeats itself and gives no facts', False),
  ('headline', 'City opens three night bus lines on Monday',
   'It is specific about what, how many and when', True),
  ('headline', 'Things happened in the city this week maybe',
   'It is vague and unsure of itself', False),
  ('wedding toast', 'To Ana and Leo, who met missing the same train and have caught every one '
   'together since.', 'It is warm, personal and ends on a neat image', True),
  ('wedding toast', 'Um so yeah, congrats I guess, marriage is a thing, ok cheers.',
   'It sounds unprepared and says nothing about the couple', False),
  ('talk abstract', 'We cut test time from 40 to 9 minutes by caching builds; this talk shows '
   'the three changes that did it.', 'It states the result, the method and what the talk covers',
   True),
  ('talk abstract', 'This talk is about some things we did. It will be interesting.',
   'It gives no topic, result or reason to attend', False),
  ('speaker bio', 'Mina Ortiz has built water pumps in 12 countries and now teaches repair '
   'skills in Lima.', 'It is concrete and gives the reader a reason to listen', True),
  ('speaker bio', 'Mina is a person who does many things and is passionate about stuff.',
   'It is generic and tells us nothing about her work', False),
  ('book review', 'A slow first half, but the flood chapter alone is worth it: tense, exact and '
   'unforgettable.', 'It is balanced and backs its verdict with a specific part', True),
  ('book review', 'Good book. I liked it. It was a good book to read.',
   'It repeats itself and gives no reason for the opinion', False),
  ('photo caption', 'Dawn over the harbor, five minutes before the fishing boats left.',
   'It places the photo in time and adds what the picture cannot show', True),
  ('photo caption', 'pic', 'It is a single word that says nothing', False),
  ('startup pitch', 'Clinics lose 1 in 5 bookings to no-shows; our text reminders cut that in '
   'half at 2 EUR a month.', 'It names the problem, the fix and the price in one breath', True),
  ('startup pitch', 'We are disrupting everything with synergy and AI for the future of things.',
   'It is buzzwords with no product or customer', False),
  ('meeting summary', 'Decided: launch moves to May 3. Owner: Priya. Open: budget for ads, due '
   'Friday.', 'It lists the decision, the owner and what is still open', True),
  ('meeting summary', 'We talked about a lot of stuff and some things were decided.',
   'It records no decision or owner', False),
  ('job ad', 'Part-time baker, 20 h a week, early shifts, 16 EUR an hour; no experience needed.',
   'It gives the hours, the pay and who can apply', True),
  ('job ad', 'Looking for a rockstar ninja who is passionate. Apply now!!!',
   'It hides the job, the pay and the hours behind hype', False),
  ('club announcement', 'Chess club meets Thursday 6 pm in room 12; beginners welcome, boards '
   'provided.', 'It says who, when, where and what to bring', True),
  ('club announcement', 'club thing soon, come maybe', 'It leaves out the day, the place and '
   'the club', False),
  ('cover blurb', 'A retired lighthouse keeper, a stolen map and one winter to find the ship '
   'that sank her father.', 'It sets up the character, the stakes and the clock', True),
  ('cover blurb', 'This is a book with a story in it that you will read.',
   'It is circular and gives no hint of the story', False),
  ('team motto', 'Ship small, ship often.', 'It is short, memorable and says how the team works',
   True),
  ('team motto', 'We are the team that does the things we do as a team.',
   'It goes in a circle and means nothing', False),
  ('story opening', 'The letter arrived forty years late, and it was addressed to my mother in '
   'my handwriting.', 'It opens with a mystery that makes the reader go on', True),
  ('story opening', 'Once there was a man. He was a man who lived in a house.',
   'It is flat and gives the reader no reason to go on', False),
  ('thank-you letter', 'Thank you for the extra hour on Friday; your notes on my draft fixed the '
   'second chapter.', 'It is specific about what the help was and why it mattered', True),
  ('thank-you letter', 'thanks for everything and all the things, bye',
   'It is vague and sounds careless', False),
  ('admissions essay', 'Repairing my neighbor\'s radios taught me to ask what a thing is for '
   'before asking how it works.', 'It draws a clear idea from a concrete experience', True),
  ('admissions essay', 'I have always wanted to go to this school because it is a good school.',
   'It is a cliche with no experience or idea behind it', False),
  ('menu description', 'Slow-roasted lamb shoulder, garlic beans, lemon yogurt; serves two.',
   'It names the cut, the sides and the portion', True),
  ('menu description', 'Meat dish. Tasty.', 'It does not say what the dish is', False),
  ('party invitation', 'Join us Saturday 7 pm at 14 Elm Road for Sara\'s 30th; bring a dish to '
   'share.', 'It has the date, time, place and what to bring', True),
  ('party invitation', 'party at some point, you know where', 'It leaves out when and where',
   False),
  ('launch tweet', 'Our app now works offline: notes sync the moment you reconnect.',
   'It names the feature and why it helps in one line', True),
  ('launch tweet', 'Big news!!! Something amazing is here!!! Check it out!!!',
   'It is all hype and never says what launched', False),
  ('app error message', 'Could not save: the disk is full. Free 20 MB and try again.',
   'It says what failed, why and what to do', True),
  ('app error message', 'Error 0x0004. Something went wrong.',
   'It tells the user neither the cause nor a fix', False))
# Small Python files: (flag, question, file name, code when True, code when False, why True,
# why False). The False code of uses_cache mentions a cache in a comment only.
PY_FILES = (
  ('uses_cache', 'keep a cache', 'loader.py',
   '_cache = {}\n\ndef load(k):\n    if k not in _cache:\n        _cache[k] = fetch(k)\n'
   '    return _cache[k]\n', '# TODO: a cache\ndef load(k):\n    return fetch(k)\n',
   'load keeps results in the _cache dict', 'load calls fetch every time; only a comment '
   'mentions a cache'),
  ('has_retries', 'retry a failed send', 'sender.py',
   'def send(msg):\n    for attempt in range(3):\n        if post(msg):\n            return True\n'
   '    return False\n', 'def send(msg):\n    return post(msg)\n',
   'send tries post up to 3 times', 'send calls post once and returns'),
  ('debug_on', 'turn debug mode on', 'settings.py', 'PORT = 8080\nDEBUG = True\n',
   'PORT = 8080\nDEBUG = False\n', 'it sets DEBUG = True', 'it sets DEBUG = False'),
  ('sorts_names', 'sort the names it returns', 'names.py',
   'def names(rows):\n    return sorted(r.name for r in rows)\n',
   'def names(rows):\n    return [r.name for r in rows]\n',
   'names returns sorted(...)', 'names returns the names in input order'),
  ('logs_errors', 'log errors', 'worker.py',
   'def run(job):\n    try:\n        job()\n    except OSError as e:\n        log.error(e)\n',
   'def run(job):\n    try:\n        job()\n    except OSError:\n        pass\n',
   'the except branch calls log.error', 'the except branch just passes'))
